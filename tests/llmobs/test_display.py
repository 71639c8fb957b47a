"""Span values printed in tables: one visible line, bounded width."""

from __future__ import annotations

from llmobs.display import MAX_CELL_CHARS, cell


def test_direction_overrides_and_line_breaks_are_shown_as_escapes() -> None:
    assert cell("gpt\u202e4o\nx\x1b[2J") == "gpt\\u202e4o\\u000ax\\u001b[2J"


def test_plain_names_are_unchanged() -> None:
    assert cell("claude-3-5-haiku-20241022") == "claude-3-5-haiku-20241022"
    assert cell("modèle-été") == "modèle-été"


def test_a_long_name_is_cut_to_the_cell_width() -> None:
    text = cell("m" * 256)

    assert len(text) == MAX_CELL_CHARS
    assert text.endswith("...")
