"""Settings: flag > environment > config file section > file top > default."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llmobs import settings as config
from llmobs.errors import ConfigError
from llmobs.settings import setting, settings_class


@settings_class
class DemoSettings:
    config_section = "demo"

    port: int = setting(8000, "listen port")
    name: str = setting("plain", "a name")
    ratio_s: float = setting(0.5, "a duration")
    enabled: bool = setting(False, "a switch")
    tags: tuple[str, ...] = setting(("a",), "a list")
    keys: dict[str, str] = setting({}, "a mapping", secret=True)
    limit: int | None = setting(None, "optional")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_flags(parser, DemoSettings)
    return parser.parse_args(argv)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_apply_without_any_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOBS_CONFIG", raising=False)

    loaded = config.load(DemoSettings, parse([]))

    assert (loaded.port, loaded.name, loaded.enabled, loaded.limit) == (
        8000,
        "plain",
        False,
        None,
    )


def test_flag_beats_env_beats_section_beats_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "port: 1\nname: top\ndemo:\n  name: section\n  ratio_s: 2\n")
    monkeypatch.setenv("LLMOBS_RATIO_S", "3.5")
    monkeypatch.setenv("LLMOBS_PORT", "2")

    loaded = config.load(DemoSettings, parse(["--config", path, "--port", "3"]))

    assert loaded.port == 3
    assert loaded.ratio_s == 3.5
    assert loaded.name == "section"


def test_types_are_converted_from_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOBS_ENABLED", "yes")
    monkeypatch.setenv("LLMOBS_TAGS", "x, y,,z")
    monkeypatch.setenv("LLMOBS_KEYS", "k1=team-a,k2=team-b")
    monkeypatch.setenv("LLMOBS_LIMIT", "7")

    loaded = config.load(DemoSettings, parse([]))

    assert loaded.enabled is True
    assert loaded.tags == ("x", "y", "z")
    assert loaded.keys == {"k1": "team-a", "k2": "team-b"}
    assert loaded.limit == 7


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOBS_PORT", "eighty")

    with pytest.raises(ConfigError, match="LLMOBS_PORT"):
        config.load(DemoSettings, parse([]))


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    top = write(tmp_path, "prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        config.load(DemoSettings, parse(["--config", top]))

    section = write(tmp_path, "demo:\n  nmae: x\n")
    with pytest.raises(ConfigError, match="nmae"):
        config.load(DemoSettings, parse(["--config", section]))


def test_a_misnamed_section_is_told_the_section_names(tmp_path: Path) -> None:
    path = write(tmp_path, "sink-demo:\n  port: 1\n")

    with pytest.raises(ConfigError, match=r"sink-demo \(the sections are: .*demo"):
        config.load(DemoSettings, parse(["--config", path]))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_that_is_not_finite_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOBS_RATIO_S", value)

    with pytest.raises(ConfigError, match="LLMOBS_RATIO_S"):
        config.load(DemoSettings, parse([]))


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        config.load(DemoSettings, parse(["--config", write(tmp_path, "- 1\n- 2\n")]))
    with pytest.raises(ConfigError, match="YAML"):
        config.load(DemoSettings, parse(["--config", write(tmp_path, "a: [\n")]))
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        config.load(DemoSettings, parse(["--config", str(tmp_path / "missing.yaml")]))


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOBS_KEYS", "sk-live-123=team")

    loaded = config.load(DemoSettings, parse([]))

    assert "sk-live-123" not in repr(loaded)
    assert "sk-live-123" not in config.describe(loaded)
    assert "keys=***" in config.describe(loaded)
