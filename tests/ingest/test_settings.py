"""GatewaySettings: api_keys from the environment, validation, masking."""

from __future__ import annotations

import argparse

import pytest

from ingest.cli import add_arguments
from ingest.settings import GatewaySettings
from llmobs.errors import ConfigError
from llmobs.settings import load


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_api_keys_from_env_and_masked_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOBS_API_KEYS", "key1=tenantA, key2=tenantB")

    settings = load(GatewaySettings, parse(["--require-api-key", "true"]))

    assert settings.api_keys == {"key1": "tenantA", "key2": "tenantB"}
    assert settings.require_api_key is True
    assert "key1" not in repr(settings)
    assert "api_keys=***" in repr(settings)


def test_defaults() -> None:
    settings = load(GatewaySettings, parse([]))

    assert (settings.http_port, settings.grpc_port) == (4318, 4317)
    assert settings.input_topic == "otlp_spans"
    assert settings.max_request_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--require-api-key", "true"], "require_api_key"),
        (["--http-port", "70000"], "http_port"),
        (["--max-request-bytes", "0"], "max_request_bytes"),
    ],
)
def test_bad_settings_name_the_key(argv: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(GatewaySettings, parse(argv))

    assert key in str(caught.value)


def test_an_api_key_tenant_that_cannot_be_a_tenant_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"api_keys.*may hold only"):
        GatewaySettings(api_keys={"k1": "team a"}).validate()
