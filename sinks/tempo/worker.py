"""The Tempo sink worker: SpanBatch records exported as OTLP/HTTP per tenant.

Each batch of records becomes one request per tenant (the tenant travels in
``X-Scope-OrgID``). Offsets are committed only after the backend accepted
every request of the batch; a request the backend refuses for good sends its
records to the DLQ with the response, and never stops the partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from confluent_kafka import Message, TopicPartition

import schemas
from llmobs.errors import SchemaError
from llmobs.retry import Backoff
from llmobs.settings import describe
from sinks.consumer import BatchConsumer, Item, LoopSettings
from sinks.handlers import WriteThrough
from sinks.tempo.exporter import ExportRejected, OtlpHttpExporter
from sinks.tempo.otlp import RequestBuilder
from sinks.tempo.settings import TempoSettings

log = logging.getLogger(__name__)

HEADER_HTTP_STATUS = "llmobs.dlq.http_status"


class TempoHandler(WriteThrough):
    """Decodes SpanBatch records and exports them, one request per tenant."""

    def __init__(self, settings: TempoSettings) -> None:
        self.settings = settings
        self.exported_spans = 0
        self.requests = 0
        self.rejected_spans = 0
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self.exporter = OtlpHttpExporter(
            settings.traces_url,
            tenant_header=settings.tenant_header,
            auth_token=settings.auth_token,
            compression=settings.compression,
            timeout_s=settings.request_timeout_s,
            backoff=Backoff(deadline_s=settings.retry_deadline_s),
        )

    def decode(self, message: Message) -> Item:
        try:
            record = self._codec.decode(message.value() or b"")
        except SchemaError as exc:
            item = Item(message)
            item.kill("schema_error", str(exc))
            return item
        return Item(message, record, size=len(record["spans"]))

    async def write(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        by_tenant: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            if not item.dead and item.payload["spans"]:
                by_tenant[item.payload["tenant"]].append(item)
        await asyncio.gather(
            *(self._export(tenant, group, stop) for tenant, group in by_tenant.items())
        )
        return None

    async def _export(
        self, tenant: str, items: list[Item], stop: asyncio.Event
    ) -> None:
        builder = RequestBuilder()
        for item in items:
            try:
                builder.add(item.payload)
            except (IndexError, KeyError, TypeError, ImportError) as exc:
                item.kill("invalid_record", f"{type(exc).__name__}: {exc}")
        live = [item for item in items if not item.dead]
        if not live:
            return

        try:
            result = await self.exporter.export(builder.build(), tenant, stop)
        except ExportRejected as exc:
            for item in live:
                item.kill(
                    "rejected_by_backend",
                    exc.body,
                    **{HEADER_HTTP_STATUS: str(exc.status)},
                )
            log.warning(
                "backend refused %d spans of tenant %s with HTTP %d",
                builder.spans,
                tenant,
                exc.status,
            )
            return

        self.requests += 1
        self.exported_spans += builder.spans
        if result.rejected_spans:
            self.rejected_spans += result.rejected_spans
            log.warning(
                "backend dropped %d of %d spans of tenant %s: %s",
                result.rejected_spans,
                builder.spans,
                tenant,
                result.error_message,
            )
        log.debug("exported %d spans of tenant %s", builder.spans, tenant)


class TempoSink:
    """Runs the Tempo handler over the sampled-spans topic."""

    def __init__(self, settings: TempoSettings) -> None:
        self.settings = settings
        self.handler = TempoHandler(settings)
        self.loop = BatchConsumer(
            "tempo sink",
            LoopSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                topic=settings.sampled_topic,
                group_id=settings.group_id,
                dlq_topic=settings.dlq_topic,
                max_batch_size=settings.max_batch_spans,
                flush_interval_s=settings.flush_interval_s,
                max_idle_s=settings.max_idle_s,
            ),
            self.handler,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Export until ``stop`` is set (or the topic stays idle), then close."""
        log.info("tempo sink starting: %s", describe(self.settings))
        try:
            await self.loop.run(stop)
        finally:
            await self.handler.exporter.close()
        h = self.handler
        log.info(
            "tempo sink stopped: %d spans in %d requests, %d dropped by the "
            "backend, %d records dead-lettered",
            h.exported_spans,
            h.requests,
            h.rejected_spans,
            self.loop.dead_lettered,
        )


def stats(sink: TempoSink) -> dict[str, Any]:
    """Counters for tests and the benchmark."""
    return {
        "exported_spans": sink.handler.exported_spans,
        "requests": sink.handler.requests,
        "dead_lettered": sink.loop.dead_lettered,
    }
