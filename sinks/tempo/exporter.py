"""OTLP/HTTP protobuf export with the retry rules of the OTLP specification.

429, 502, 503 and 504 and network errors are retried with exponential
backoff and full jitter, waiting at least what ``Retry-After`` asks, until a
deadline; a ``Retry-After`` reaching past the deadline ends the tries at once,
and later requests of that tenant wait for it too. Any other non-2xx answer
is final: ``ExportRejected`` carries it, with the ``google.rpc.Status``
message of a protobuf body, so the caller can split or dead-letter the
records. A request that cannot even be sent (a header value HTTP forbids) is
final too: ``ExportInvalid``.
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
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from llmobs.errors import ObservatoryError, RetriableStageError
from llmobs.retry import Backoff, ShutdownRequested

log = logging.getLogger(__name__)

RETRIABLE_STATUS = frozenset({429, 502, 503, 504})
TOO_LARGE = 413
MAX_BODY_CHARS = 500


class ExportRejected(ObservatoryError):
    """The backend refused a request for good; its records go to the DLQ."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"backend answered {status}: {body[:MAX_BODY_CHARS]}")
        self.status = status
        self.body = body[:MAX_BODY_CHARS]


class ExportInvalid(ObservatoryError):
    """The request cannot be sent at all; retrying can never change that."""


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
        # tenant -> monotonic time before which the backend asked for quiet
        self._quiet_until_s: dict[str, float] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def export(
        self,
        body: bytes,
        tenant: str,
        stop: asyncio.Event | None = None,
        give_up_at_s: float | None = None,
    ) -> ExportResult:
        """Send one request until accepted; ExportRejected when refused.

        ``give_up_at_s`` (monotonic) ends the tries; by default the backoff's
        deadline from now. RetriableStageError when it passes.
        """
        started_s = time.monotonic()
        if give_up_at_s is None:
            give_up_at_s = started_s + self.backoff.deadline_s
        if self.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
        headers = dict(self._headers)
        if self.tenant_header:
            headers[self.tenant_header] = tenant

        # Step 1: a Retry-After the backend gave this tenant still holds.
        quiet_s = self._quiet_until_s.get(tenant, 0.0) - started_s
        if quiet_s > 0:
            if started_s + quiet_s > give_up_at_s:
                raise RetriableStageError(
                    f"{self.url} asked tenant {tenant} to wait {quiet_s:.0f}s more"
                )
            await _sleep(quiet_s, stop)
        self._quiet_until_s.pop(tenant, None)

        # Step 2: try until accepted, refused, or out of time.
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._post(body, headers, attempt)
            except _TryAgain as exc:
                now_s = time.monotonic()
                left_s = give_up_at_s - now_s
                wait_s = exc.retry_after_s or 0.0
                if wait_s:
                    self._quiet_until_s[tenant] = now_s + wait_s
                if left_s <= 0 or wait_s > left_s:
                    raise RetriableStageError(
                        f"{self.url} not accepting for {now_s - started_s:.0f}s "
                        f"(asked to wait {wait_s:.0f}s): {exc}"
                    ) from exc
                delay_s = min(max(self.backoff.delay_s(attempt), wait_s), left_s)
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
                content_type = response.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _TryAgain(type(exc).__name__) from exc
        except ValueError as exc:
            # aiohttp refuses to build the request (e.g. CR or LF in a header).
            raise ExportInvalid(f"request not sendable: {exc}") from exc

        if status in RETRIABLE_STATUS:
            raise _TryAgain(f"HTTP {status}", wait_s)
        if not 200 <= status < 300:
            raise ExportRejected(status, error_text(payload, content_type))
        return _result(status, attempt, payload)


def error_text(payload: bytes, content_type: str) -> str:
    """What an error body says: Status.message of a protobuf body, else text."""
    if "protobuf" in content_type:
        try:
            status: Any = status_pb2.Status.FromString(payload)
        except DecodeError:
            status = None
        if status is not None and status.message:
            return str(status.message)
    return payload.decode("utf-8", "replace")


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
