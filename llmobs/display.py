"""Values from spans made safe to print in a terminal table."""

from __future__ import annotations

import unicodedata

# Columns of a printed table stop at this width; the rest becomes "...".
MAX_CELL_CHARS = 60
# Control, format (bidirectional overrides among them) and separators.
_HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def cell(value: object, max_chars: int = MAX_CELL_CHARS) -> str:
    """``value`` as one line of visible text, at most ``max_chars`` long.

    A name an app sent may hold characters that move the cursor, reverse the
    text or break the line; they are shown as escapes instead.
    """
    text = "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in _HIDDEN else c
        for c in str(value)
    )
    if len(text) > max_chars:
        return text[: max_chars - 3] + "..."
    return text
