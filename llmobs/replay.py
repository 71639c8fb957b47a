"""``llmobs replay``: send recorded OTLP requests, or the archive, to the pipeline.

Reads OTLP JSON lines (one ExportTraceServiceRequest per line, as the
Collector's file exporter writes with ``format: json``) or OTLP protobuf
(a stream of messages each prefixed by a 4-byte big-endian length, as the
file exporter writes with ``format: proto``, or one bare message per file).
Sends each request either to the gateway over OTLP/HTTP or straight to the
input topic, unkeyed, the way the Collector's kafkaexporter does by default.
With ``--from-archive PATH`` it reads the Parquet archive instead and sends
its SpanBatch records to ``spans_topic`` (``sinks.archive.replay``).
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

import orjson

from llmobs import settings as config
from llmobs import topics
from llmobs.errors import ConfigError, DecodeError, StageError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.retry import Backoff, retry_async
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
    replay_format: str = setting(
        "auto", "auto, json (one object), jsonl, proto-stream or proto"
    )
    concurrency: int = setting(8, "requests in flight to the gateway")
    from_archive: str | None = setting(
        None, "replay this archive (folder or s3://bucket/prefix) instead of files"
    )
    since: str = setting("24h", "--from-archive: from this time (ISO 8601 or 2h, 7d)")
    until: str | None = setting(None, "--from-archive: up to this time (unset: now)")
    tenant: str | None = setting(None, "--from-archive: only this tenant")
    spans_topic: str = setting(topics.SPANS, "topic written with --from-archive")
    s3_endpoint_url: str | None = setting(None, "S3 API endpoint override (MinIO)")
    s3_region: str = setting("us-east-1", "S3 region of --from-archive")
    s3_access_key_id: str | None = setting(
        None, "S3 access key (unset: boto3's usual credential chain)", secret=True
    )
    s3_secret_access_key: str | None = setting(
        None, "S3 secret key (unset: boto3's usual credential chain)", secret=True
    )

    def validate(self) -> None:
        if self.target not in ("gateway", "kafka"):
            raise ConfigError(f"target must be gateway or kafka, not {self.target!r}")
        if self.replay_format not in ("auto", "json", "jsonl", "proto-stream", "proto"):
            raise ConfigError(f"replay_format {self.replay_format!r} is not known")
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", type=Path, help="files to replay")
    config.add_flags(parser, ReplaySettings)


def read_requests(
    path: Path, fmt: str = "auto", skipped: list[str] | None = None
) -> Iterator[tuple[bytes, str]]:
    """Yield (body, content type) for each request stored in ``path``.

    A JSON line that is not an object is logged, named in ``skipped`` and
    passed over: one bad line must not cost the rest of the file.
    """
    data = path.read_bytes()
    if fmt == "auto":
        fmt = _guess_format(path, data)
    if fmt == "json":
        yield orjson.dumps(orjson.loads(data)), JSON
        return
    if fmt == "jsonl":
        for number, line in enumerate(data.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line[:1] != b"{":
                where = f"{path}:{number}"
                log.warning("%s is not a JSON object; skipped", where)
                if skipped is not None:
                    skipped.append(where)
                continue
            yield line, JSON
        return
    if fmt == "proto-stream":
        yield from ((body, PROTOBUF) for body in _length_prefixed(path, data))
        return
    yield data, PROTOBUF


def _guess_format(path: Path, data: bytes) -> str:
    # A protobuf request opens with 0x0A, a newline to lstrip(): a file
    # that starts with it is JSON only when its name says so.
    opens_json = data[:1] != b"\n" and data.lstrip()[:1] == b"{"
    if opens_json or path.suffix in (".jsonl", ".json"):
        # One pretty-printed request, or one request per line.
        return "json" if _is_one_json_object(data) else "jsonl"
    if _is_length_prefixed(data):
        return "proto-stream"
    return "proto"


def _is_one_json_object(data: bytes) -> bool:
    if b"\n" not in data.strip():
        return False
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


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
        # A terminal gets one line redrawn; a log file a line every 10 s.
        interactive = sys.stderr.isatty()
        if now - self._shown >= (0.5 if interactive else 10.0):
            self._shown = now
            self.show(end="\r" if interactive else "\n")

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

    async def post(session: aiohttp.ClientSession, body: bytes, kind: str) -> None:
        async with session.post(
            url, data=body, headers={**headers, "Content-Type": kind}
        ) as response:
            await response.read()
            if response.status in RETRIABLE_STATUSES:
                raise GatewayBusy(response.status)
            if response.status != 200:
                log.warning("gateway answered %d", response.status)
            progress.add(len(body), response.status == 200)

    async def send(session: aiohttp.ClientSession, body: bytes, kind: str) -> None:
        try:
            await retry_async(
                "replaying a request",
                lambda: post(session, body, kind),
                (GatewayBusy, aiohttp.ClientConnectionError),
                REPLAY_BACKOFF,
            )
        except (GatewayBusy, aiohttp.ClientError) as exc:
            log.warning("gateway request failed: %s", exc)
            progress.add(len(body), False)
        finally:
            slots.release()

    async with aiohttp.ClientSession() as session:
        tasks = []
        try:
            for body, kind in bodies:
                await slots.acquire()
                tasks.append(asyncio.create_task(send(session, body, kind)))
        finally:
            # Requests already sent finish before the session closes, also
            # when reading the next body failed.
            await asyncio.gather(*tasks)
    return progress


RETRIABLE_STATUSES = (429, 502, 503, 504)
REPLAY_BACKOFF = Backoff(initial_s=0.5, max_s=10.0, deadline_s=120.0)


class GatewayBusy(Exception):
    """The gateway asked for the request again later (429, 503)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"gateway answered {status}")
        self.status = status


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
        # What was queued before the failure still gets its chance.
        remaining = producer.flush(60)
        raise StageError(
            f"cannot produce to {settings.input_topic}: {exc} "
            f"({remaining} queued messages not delivered)"
        ) from exc
    if remaining:
        raise StageError(
            f"{remaining} messages not delivered to {settings.input_topic}"
        )
    return progress


def run(args: argparse.Namespace) -> int:
    settings = config.load(ReplaySettings, args)
    if settings.from_archive is not None:
        return _from_archive(settings, settings.from_archive)
    if not args.files:
        raise ConfigError("name files to replay, or --from-archive PATH")
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}")

    skipped: list[str] = []

    def bodies() -> Iterator[tuple[bytes, str]]:
        for path in args.files:
            yield from read_requests(path, settings.replay_format, skipped)

    if settings.target == "kafka":
        progress = _to_kafka(settings, bodies())
    else:
        progress = asyncio.run(_to_gateway(settings, bodies()))
    progress.show()
    if skipped:
        print(f"skipped {len(skipped)} unreadable lines", file=sys.stderr)
    return 1 if progress.failed or skipped else 0


def _from_archive(settings: ReplaySettings, path: str) -> int:
    from sinks.archive.replay import parse_time, replay_archive
    from sinks.archive.storage import open_store

    since = parse_time(settings.since)
    until = parse_time(settings.until) if settings.until else parse_time("0m")
    if until <= since:
        raise ConfigError("until must be later than since")
    if "://" not in path and not Path(path).is_dir():
        raise ConfigError(f"archive folder {path} does not exist")
    store = open_store(
        path,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
    replay_archive(
        store,
        settings.kafka_bootstrap,
        settings.spans_topic,
        since,
        until,
        settings.tenant,
    )
    return 0
