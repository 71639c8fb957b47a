"""The OTLP/HTTP exporter's retry rules against a local HTTP server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from google.rpc import status_pb2

from llmobs.errors import RetriableStageError
from llmobs.retry import Backoff
from sinks.tempo.exporter import (
    ExportInvalid,
    ExportRejected,
    OtlpHttpExporter,
    retry_after_s,
)


class Backend:
    """Answers each POST with the next scripted (status, headers[, body])."""

    def __init__(self) -> None:
        self.script: list[tuple[Any, ...]] = []
        self.seen: list[tuple[float, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((time.monotonic(), dict(request.headers), body))
        status, headers, *rest = self.script.pop(0) if self.script else (200, {})
        return web.Response(
            status=status, headers=headers, body=rest[0] if rest else b"nope"
        )


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Backend, str]]:
    state = Backend()
    app = web.Application()
    app.router.add_post("/v1/traces", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, f"http://127.0.0.1:{port}/v1/traces"
    await runner.cleanup()


def exporter(url: str, deadline_s: float = 10.0) -> OtlpHttpExporter:
    return OtlpHttpExporter(
        url,
        tenant_header="X-Scope-OrgID",
        backoff=Backoff(initial_s=0.01, max_s=0.05, deadline_s=deadline_s),
    )


async def test_retries_honour_retry_after_then_succeed(
    backend: tuple[Backend, str],
) -> None:
    state, url = backend
    state.script = [(429, {"Retry-After": "1"}), (503, {}), (200, {})]
    client = exporter(url)

    result = await client.export(b"payload", "acme")
    await client.close()

    assert result.attempts == 3
    assert state.seen[1][0] - state.seen[0][0] >= 0.95
    _, headers, body = state.seen[-1]
    assert headers["X-Scope-OrgID"] == "acme"
    assert headers["Content-Encoding"] == "gzip"
    # aiohttp inflates a body it was told is gzip; a wrong encoding fails here.
    assert body == b"payload"


@pytest.mark.parametrize("status", [400, 401, 413, 500])
async def test_other_errors_are_final(
    backend: tuple[Backend, str], status: int
) -> None:
    state, url = backend
    state.script = [(status, {})]
    client = exporter(url)

    with pytest.raises(ExportRejected) as raised:
        await client.export(b"payload", "acme")
    await client.close()

    assert raised.value.status == status
    assert raised.value.body == "nope"
    assert len(state.seen) == 1


async def test_gives_up_at_the_deadline(backend: tuple[Backend, str]) -> None:
    state, url = backend
    state.script = [(502, {})] * 1000
    client = exporter(url, deadline_s=0.3)

    started = time.monotonic()
    with pytest.raises(RetriableStageError):
        await client.export(b"payload", "acme")
    await client.close()

    assert time.monotonic() - started < 2.0
    assert len(state.seen) > 1


async def test_retry_after_past_the_deadline_gives_up_at_once(
    backend: tuple[Backend, str],
) -> None:
    state, url = backend
    state.script = [(429, {"Retry-After": "30"})] * 10
    client = exporter(url, deadline_s=2.0)

    with pytest.raises(RetriableStageError):
        await client.export(b"payload", "acme")
    # Until the backend's wait is over, the tenant's next request is not sent.
    with pytest.raises(RetriableStageError):
        await client.export(b"payload", "acme")
    await client.close()

    assert len(state.seen) == 1


async def test_protobuf_error_body_gives_the_status_message(
    backend: tuple[Backend, str],
) -> None:
    state, url = backend
    body = status_pb2.Status(code=3, message="unexpected EOF").SerializeToString()
    assert body[:4] == bytes.fromhex("0803120e")  # what Jaeger answers
    state.script = [(400, {"Content-Type": "application/x-protobuf"}, body)]
    client = exporter(url)

    with pytest.raises(ExportRejected) as raised:
        await client.export(b"payload", "acme")
    await client.close()

    assert raised.value.body == "unexpected EOF"


async def test_a_header_the_client_cannot_send_is_final(
    backend: tuple[Backend, str],
) -> None:
    state, url = backend
    client = exporter(url)

    with pytest.raises(ExportInvalid):
        await client.export(b"payload", "evil\r\nX-Injected: 1")
    await client.close()

    assert state.seen == []


async def test_unreachable_backend_is_retried_until_the_deadline() -> None:
    client = exporter("http://127.0.0.1:9/v1/traces", deadline_s=0.2)
    with pytest.raises(RetriableStageError):
        await client.export(b"payload", "acme")
    await client.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_forms(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header) == expected


def test_retry_after_http_date_in_the_future() -> None:
    wait = retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now_s=1445412480.0)
    assert wait == pytest.approx(10.0)
