"""The gateway process: OTLP/HTTP and OTLP/gRPC listeners over one producer."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from aiohttp import web

from ingest.export import Exporter
from ingest.grpc import TraceService
from ingest.http import build_app
from ingest.metrics import GatewayMetrics
from ingest.producer import SpanProducer
from ingest.settings import GatewaySettings
from llmobs.errors import StageError
from llmobs.settings import describe

log = logging.getLogger(__name__)


class Gateway:
    """Both listeners and the Kafka producer, started and stopped together."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.producer = SpanProducer(settings, self.metrics)
        self._exporter = Exporter(settings, self.producer, self.metrics)
        self._http: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self.http_port = 0
        self.grpc_port = 0

    async def start(self) -> None:
        """Start the producer, then listen; ports 0 are replaced by the bound ones."""
        settings = self.settings
        self.producer.start()

        app = build_app(settings, self._exporter, self.producer, self.metrics)
        self._http = web.AppRunner(
            app,
            auto_decompress=False,
            access_log=None,
            shutdown_timeout=settings.shutdown_grace_s,
        )
        await self._http.setup()
        site = web.TCPSite(self._http, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise StageError(
                f"cannot listen on {settings.http_host}:{settings.http_port} "
                f"(http_port): {exc.strerror}"
            ) from exc
        self.http_port = _bound_port(self._http, settings.http_port)

        service = TraceService(settings, self._exporter, self.metrics)
        self._grpc = grpc.aio.server(
            handlers=[service.handler()],
            options=[
                ("grpc.max_receive_message_length", settings.max_request_bytes),
                ("grpc.max_send_message_length", settings.max_request_bytes),
            ],
        )
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        try:
            self.grpc_port = self._grpc.add_insecure_port(address)
        except RuntimeError as exc:
            raise StageError(f"cannot listen on {address} (grpc_port)") from exc
        await self._grpc.start()
        log.info(
            "gateway listening on http :%d and grpc :%d; %s",
            self.http_port,
            self.grpc_port,
            describe(settings),
        )

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, then flush Kafka."""
        if self._http is None or self._grpc is None:
            return
        grace_s = self.settings.shutdown_grace_s

        # Step 1: close both listeners; requests already in progress go on.
        http, self._http = self._http, None
        grpc_server, self._grpc = self._grpc, None
        await asyncio.gather(grpc_server.stop(grace_s), http.cleanup())

        # Step 2: only now that no request can add messages, flush the producer.
        await self.producer.close(grace_s)
        log.info(
            "gateway stopped: %d span(s) accepted, %d message(s) produced",
            self.metrics.spans_accepted,
            self.metrics.messages_produced,
        )


async def serve(settings: GatewaySettings) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    gateway = Gateway(settings)
    await gateway.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("gateway stopping on signal")
    finally:
        await gateway.stop()


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    if configured:
        return configured
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return configured
