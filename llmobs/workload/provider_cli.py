"""``llmobs fake-provider``: serve the fake OpenAI and Anthropic APIs."""

from __future__ import annotations

import argparse
import logging

from llmobs import settings as config
from llmobs.errors import ConfigError
from llmobs.settings import setting, settings_class

log = logging.getLogger(__name__)


@settings_class
class FakeProviderSettings:
    """Where the fake provider listens."""

    config_section = "fake_provider"

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8765, "TCP port to listen on")

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"setting port: {self.port} is not a TCP port")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, FakeProviderSettings)


def run(args: argparse.Namespace) -> int:
    settings = config.load(FakeProviderSettings, args)

    from aiohttp import web

    from llmobs.workload.provider import make_app

    log.info("fake provider starting: %s", config.describe(settings))
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"fake provider on {url} (OpenAI base_url {url}/v1, Anthropic base_url {url})",
        flush=True,
    )
    web.run_app(
        make_app(), host=settings.host, port=settings.port, print=None, access_log=None
    )
    return 0
