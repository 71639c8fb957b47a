"""OTLP/HTTP protobuf export with the retry rules of the OTLP specification.

429, 502, 503 and 504 and network errors are retried with exponential
backoff and full jitter, waiting at least what ``Retry-After`` asks, until a
deadline. Any other non-2xx answer is final: ``ExportRejected`` carries it
so the caller can dead-letter the records.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from llmobs.errors import ObservatoryError, RetriableStageError
from llmobs.retry import Backoff, ShutdownRequested

log = logging.getLogger(__name__)

RETRIABLE_STATUS = frozenset({429, 502, 503, 504})
MAX_BODY_CHARS = 500


class ExportRejected(ObservatoryError):
    """The backend refused a request for good; its records go to the DLQ."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"backend answered {status}: {body[:MAX_BODY_CHARS]}")
        self.status = status
        self.body = body[:MAX_BODY_CHARS]


class _TryAgain(Exception):
    def __init__(self, why: str, retry_after_s: float | None = None) -> None:
        super().__init__(why)
        self.retry_after_s = retry_after_s


@dataclass
class ExportResult:
    """What the backend said about an accepted request."""

    status: int
    attempts: int
    rejected_spans: int = 0
    error_message: str = ""


def retry_after_s(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now_s = time.time() if now_s is None else now_s
    return max(0.0, when.timestamp() - now_s)


class OtlpHttpExporter:
    """Posts serialized ExportTraceServiceRequest bodies to one URL."""

    def __init__(
        self,
        url: str,
        *,
        tenant_header: str = "",
        auth_token: str = "",
        compression: str = "gzip",
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self.tenant_header = tenant_header
        self.compression = compression
        self.backoff = backoff or Backoff()
        self._headers = {"Content-Type": "application/x-protobuf"}
        if compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        if auth_token:
            self._headers["Authorization"] = f"Bearer {auth_token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def export(
        self, body: bytes, tenant: str, stop: asyncio.Event | None = None
    ) -> ExportResult:
        """Send one request until accepted; ExportRejected when refused."""
        if self.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
        headers = dict(self._headers)
        if self.tenant_header:
            headers[self.tenant_header] = tenant

        started_s = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._post(body, headers, attempt)
            except _TryAgain as exc:
                elapsed_s = time.monotonic() - started_s
                if elapsed_s >= self.backoff.deadline_s:
                    raise RetriableStageError(
                        f"{self.url} not accepting for {elapsed_s:.0f}s: {exc}"
                    ) from exc
                delay_s = max(self.backoff.delay_s(attempt), exc.retry_after_s or 0)
                delay_s = min(delay_s, self.backoff.deadline_s - elapsed_s)
                log.warning(
                    "export to %s failed (attempt %d, %s); retrying in %.2fs",
                    self.url,
                    attempt,
                    exc,
                    delay_s,
                )
                await _sleep(delay_s, stop)

    async def _post(
        self, body: bytes, headers: dict[str, str], attempt: int
    ) -> ExportResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self.url, data=body, headers=headers
            ) as response:
                payload = await response.read()
                status = response.status
                wait_s = retry_after_s(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _TryAgain(type(exc).__name__) from exc

        if status in RETRIABLE_STATUS:
            raise _TryAgain(f"HTTP {status}", wait_s)
        if not 200 <= status < 300:
            raise ExportRejected(status, payload.decode("utf-8", "replace"))
        return _result(status, attempt, payload)


def _result(status: int, attempts: int, payload: bytes) -> ExportResult:
    result = ExportResult(status, attempts)
    if not payload:
        return result
    try:
        response: Any = ExportTraceServiceResponse.FromString(payload)
    except DecodeError:
        # A 2xx answer whose body is not a response message is still a success.
        return result
    if response.HasField("partial_success"):
        result.rejected_spans = response.partial_success.rejected_spans
        result.error_message = response.partial_success.error_message
    return result


async def _sleep(delay_s: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(delay_s)
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
    except TimeoutError:
        return
    raise ShutdownRequested("export retry")
