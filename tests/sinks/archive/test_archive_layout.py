"""Archive object names and the manifest of uploaded ranges."""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.archive import layout
from sinks.archive.layout import Manifest


def test_hive_dir_quotes_the_tenant_and_parses_back() -> None:
    hour = datetime(2025, 1, 15, 9, tzinfo=UTC)
    folder = layout.hive_dir("team a/b", hour)

    assert folder == "tenant=team%20a%2Fb/date=2025-01-15/hour=09"
    assert layout.parse_hive(folder + "/x.parquet") == ("team a/b", "2025-01-15", 9)


def test_object_names_sort_by_offset_and_parse_back() -> None:
    name = layout.object_name("llm.spans", 3, 7, 120)

    assert name == "llm.spans-3-00000000000000000007-00000000000000000120.parquet"
    assert layout.parse_object_name(name) == ("llm.spans", 3, 7, 120)
    assert layout.parse_object_name("other.parquet") is None


def test_manifest_covers_only_its_ranges_per_folder() -> None:
    manifest = Manifest("t", 0)
    manifest.add("a", 10, 20)
    manifest.add("a", 30, 30)
    manifest.add("b", 0, 5)

    assert [o for o in range(0, 40) if manifest.covers("a", o)] == [
        *range(10, 21),
        30,
    ]
    assert not manifest.covers("c", 10)
    again = Manifest.from_bytes("t", 0, manifest.to_bytes())
    assert again.ranges == manifest.ranges


def test_prune_forgets_ranges_gone_from_kafka() -> None:
    manifest = Manifest("t", 0)
    manifest.add("a", 0, 9)
    manifest.add("a", 10, 19)
    manifest.add("b", 5, 6)

    assert manifest.prune(10) == 2
    assert manifest.ranges == {"a": [(10, 19)]}


def test_covers_an_offset_inside_a_range_nested_in_another() -> None:
    manifest = Manifest("t", 0)
    manifest.add("a", 5, 25)
    manifest.add("a", 10, 20)

    assert manifest.covers("a", 22)
    assert [o for o in range(0, 30) if manifest.covers("a", o)] == list(range(5, 26))
    assert manifest.listed("a", 10, 20) and manifest.listed("a", 5, 25)


def test_announced_uploads_are_kept_apart_until_settled() -> None:
    manifest = Manifest("t", 0)
    manifest.announce("a", 0, 9)
    manifest.announce("a", 10, 19)

    again = Manifest.from_bytes("t", 0, manifest.to_bytes())
    assert again.pending == {"a": [(0, 9), (10, 19)]}
    assert not again.covers("a", 5)
    assert again.listed("a", 0, 9)

    again.settle("a", 0, 9, uploaded=True)
    again.settle("a", 10, 19, uploaded=False)
    assert again.covers("a", 5) and not again.covers("a", 15)
    assert again.pending == {}
    assert again.ranges == {"a": [(0, 9)]}
