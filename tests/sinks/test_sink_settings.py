"""Settings of the sink processes: validation and secret masking."""

from __future__ import annotations

import argparse

import pytest

from llmobs import settings as config
from llmobs.errors import ConfigError
from sinks.settings import SinkSettings, masked_url


def load(argv: list[str]) -> SinkSettings:
    parser = argparse.ArgumentParser()
    config.add_flags(parser, SinkSettings)
    return config.load(SinkSettings, parser.parse_args(argv))


def test_defaults_match_the_pipeline_names() -> None:
    settings = load([])

    assert settings.spans_topic == "llm.spans"
    assert settings.group_id == "llmobs-sink-postgres"
    assert settings.dlq_topic == "llm.dlq"
    assert settings.max_batch_spans == 5000
    assert settings.flush_interval_s == 1.0
    assert settings.max_idle_s is None


def test_flags_are_typed() -> None:
    settings = load(["--max-batch-spans", "10", "--max-idle-s", "2.5"])

    assert settings.max_batch_spans == 10
    assert settings.max_idle_s == 2.5


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--max-batch-spans", "0"], "max_batch_spans"),
        (["--flush-interval-s", "0"], "flush_interval_s"),
        (["--max-idle-s", "-1"], "max_idle_s"),
        (["--database-url", "mysql://x@y/z"], "database_url"),
    ],
)
def test_bad_values_name_the_key(argv: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(argv)


def test_password_is_masked_everywhere_it_is_printed() -> None:
    url = "postgresql://writer:s3cret@db.internal:5432/llmobs"
    settings = load(["--database-url", url])

    assert "s3cret" not in repr(settings)
    assert masked_url(url) == "postgresql://writer:***@db.internal:5432/llmobs"
    assert masked_url("postgresql://db/llmobs") == "postgresql://db/llmobs"
