"""``llmobs replay FILE``: send recorded OTLP trace requests to the pipeline.

Reads OTLP JSON lines (one ExportTraceServiceRequest per line, as the
Collector's file exporter writes with ``format: json``) or OTLP protobuf
(a stream of messages each prefixed by a 4-byte big-endian length, as the
file exporter writes with ``format: proto``, or one bare message per file).
Sends each request either to the gateway over OTLP/HTTP or straight to the
input topic, unkeyed, the way the Collector's kafkaexporter does by default.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from llmobs import settings as config
from llmobs import topics
from llmobs.errors import ConfigError, DecodeError, StageError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class

log = logging.getLogger(__name__)

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


@settings_class
class ReplaySettings:
    config_section = "replay"

    target: str = setting("gateway", "where to send: gateway or kafka")
    otlp_endpoint: str = setting("http://127.0.0.1:4318", "gateway OTLP/HTTP base URL")
    api_key: str = setting("", "API key sent to the gateway", secret=True)
    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    input_topic: str = setting(topics.OTLP_SPANS, "topic written with --target kafka")
    replay_format: str = setting("auto", "auto, jsonl, proto-stream or proto")
    concurrency: int = setting(8, "requests in flight to the gateway")

    def validate(self) -> None:
        if self.target not in ("gateway", "kafka"):
            raise ConfigError(f"target must be gateway or kafka, not {self.target!r}")
        if self.replay_format not in ("auto", "jsonl", "proto-stream", "proto"):
            raise ConfigError(f"replay_format {self.replay_format!r} is not known")
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="files to replay")
    config.add_flags(parser, ReplaySettings)


def read_requests(path: Path, fmt: str = "auto") -> Iterator[tuple[bytes, str]]:
    """Yield (body, content type) for each request stored in ``path``."""
    data = path.read_bytes()
    if fmt == "auto":
        fmt = _guess_format(path, data)
    if fmt == "jsonl":
        for number, line in enumerate(data.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line[:1] != b"{":
                raise DecodeError(
                    "invalid_json", f"{path}:{number} is not a JSON object"
                )
            yield line, JSON
        return
    if fmt == "proto-stream":
        yield from ((body, PROTOBUF) for body in _length_prefixed(path, data))
        return
    yield data, PROTOBUF


def _guess_format(path: Path, data: bytes) -> str:
    if path.suffix in (".jsonl", ".json") or data.lstrip()[:1] == b"{":
        return "jsonl"
    if _is_length_prefixed(data):
        return "proto-stream"
    return "proto"


def _is_length_prefixed(data: bytes) -> bool:
    position = 0
    while position + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, position)
        position += 4 + size
    return position == len(data) and len(data) >= 4


def _length_prefixed(path: Path, data: bytes) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        if position + 4 > len(data):
            raise DecodeError("truncated", f"{path}: length prefix cut at {position}")
        (size,) = struct.unpack_from(">I", data, position)
        position += 4
        if position + size > len(data):
            raise DecodeError("truncated", f"{path}: message cut at {position}")
        yield data[position : position + size]
        position += size


class Progress:
    """A one-line progress report on stderr, refreshed at most every 0.5 s."""

    def __init__(self) -> None:
        self.requests = 0
        self.failed = 0
        self.bytes = 0
        self._started = time.monotonic()
        self._shown = 0.0

    def add(self, size: int, ok: bool) -> None:
        self.requests += 1
        self.bytes += size
        self.failed += 0 if ok else 1
        now = time.monotonic()
        if now - self._shown >= 0.5:
            self._shown = now
            self.show(end="\r")

    def show(self, end: str = "\n") -> None:
        elapsed_s = max(time.monotonic() - self._started, 1e-9)
        print(
            f"replayed {self.requests} requests ({self.failed} failed), "
            f"{self.bytes / 1e6:.1f} MB, {self.requests / elapsed_s:.0f} req/s",
            end=end,
            file=sys.stderr,
            flush=True,
        )


async def _to_gateway(
    settings: ReplaySettings, bodies: Iterator[tuple[bytes, str]]
) -> Progress:
    import aiohttp

    progress = Progress()
    url = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    headers = (
        {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    )
    slots = asyncio.Semaphore(settings.concurrency)

    async def send(session: aiohttp.ClientSession, body: bytes, kind: str) -> None:
        try:
            async with session.post(
                url, data=body, headers={**headers, "Content-Type": kind}
            ) as response:
                await response.read()
                if response.status != 200:
                    log.warning("gateway answered %d", response.status)
                progress.add(len(body), response.status == 200)
        except aiohttp.ClientError as exc:
            log.warning("gateway request failed: %s", exc)
            progress.add(len(body), False)
        finally:
            slots.release()

    async with aiohttp.ClientSession() as session:
        tasks = []
        for body, kind in bodies:
            await slots.acquire()
            tasks.append(asyncio.create_task(send(session, body, kind)))
        await asyncio.gather(*tasks)
    return progress


def _to_kafka(
    settings: ReplaySettings, bodies: Iterator[tuple[bytes, str]]
) -> Progress:
    from confluent_kafka import KafkaException, Producer

    from llmobs.kafka import producer_config

    progress = Progress()
    producer = Producer(producer_config(settings.kafka_bootstrap))

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            log.warning("delivery failed: %s", err)
        progress.add(len(msg.value() or b""), err is None)  # type: ignore[attr-defined]

    try:
        for body, _ in bodies:
            while True:
                try:
                    producer.produce(
                        settings.input_topic, value=body, on_delivery=delivered
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        remaining = producer.flush(60)
    except KafkaException as exc:
        raise StageError(f"cannot produce to {settings.input_topic}: {exc}") from exc
    if remaining:
        raise StageError(
            f"{remaining} messages not delivered to {settings.input_topic}"
        )
    return progress


def run(args: argparse.Namespace) -> int:
    settings = config.load(ReplaySettings, args)
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}")

    def bodies() -> Iterator[tuple[bytes, str]]:
        for path in args.files:
            yield from read_requests(path, settings.replay_format)

    if settings.target == "kafka":
        progress = _to_kafka(settings, bodies())
    else:
        progress = asyncio.run(_to_gateway(settings, bodies()))
    progress.show()
    return 1 if progress.failed else 0
