"""Benchmarks of the Tempo and archive sinks, fed from a filled topic."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bench.common import (
    BOOTSTRAP,
    JAEGER_OTLP,
    SPANS_PER_TRACE,
    drain,
    fill_topic,
    span_batches,
)


def bench_tempo(traces: int) -> float:
    """Spans/s from llm.spans records to the local Jaeger over OTLP/HTTP."""
    from sinks.tempo.settings import TempoSettings
    from sinks.tempo.worker import TempoSink

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-{run_id}-llm.spans.sampled"
    fill_topic(topic, span_batches(traces, f"bench-{run_id}"))
    values: dict[str, Any] = {
        "kafka_bootstrap": BOOTSTRAP,
        "sampled_topic": topic,
        "group_id": f"bench-{run_id}-tempo",
        "otlp_endpoint": JAEGER_OTLP,
    }
    sink = TempoSink(TempoSettings(**values))
    total = traces * SPANS_PER_TRACE
    elapsed_s = asyncio.run(drain(sink, lambda: sink.handler.exported_spans, total))
    return total / elapsed_s


def bench_archive(traces: int) -> tuple[float, float]:
    """Spans/s into Parquet files in a temporary folder, and bytes per span."""
    import tempfile

    from sinks.archive.settings import ArchiveSettings
    from sinks.archive.worker import ArchiveSink

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-{run_id}-llm.spans"
    fill_topic(topic, span_batches(traces, f"bench-{run_id}"))
    total = traces * SPANS_PER_TRACE
    with tempfile.TemporaryDirectory(prefix="llmobs-archive-") as folder:
        values: dict[str, Any] = {
            "kafka_bootstrap": BOOTSTRAP,
            "spans_topic": topic,
            "group_id": f"bench-{run_id}-archive",
            "archive_url": folder,
            # One file per partition and hour, as in production.
            "max_file_bytes": 256 * 1024 * 1024,
        }
        sink = ArchiveSink(ArchiveSettings(**values))
        # Counts spans buffered; the files are written when the sink closes.
        h = sink.handler
        elapsed_s = asyncio.run(
            drain(sink, lambda: sum(f.rows.count for f in h._open.values()), total)
        )
    return total / elapsed_s, h.bytes_written / max(1, h.archived_spans)
