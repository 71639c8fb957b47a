"""``make bench``: throughput and latency of the pipeline, printed as a table.

Measured against the real local services:
- in-process stages of the stream worker (no Kafka): decode and normalize,
  cost enrichment alone, the tail sampler (and the memory it holds per
  buffered span, traced in a run of its own), the minute windows;
- gateway: OTLP/HTTP requests acknowledged (Kafka delivery confirmed);
- end to end: gateway -> Kafka -> streams -> Kafka -> sink -> PostgreSQL,
  with the latency from each request's acknowledgement to its rows being
  written (``llm_spans.written_at``);
- the Tempo sink (to the local Jaeger) and the archive sink (Parquet files);
- ack to metric: from the last request's acknowledgement to its minute in
  ``llm_metrics_1m`` (one run: it waits for the window to close).
Each other figure is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable

from bench import pipeline, sinks, stages
from bench.common import SPANS_PER_TRACE

Row = tuple[str, str]  # what, unit
Measure = Callable[[], dict[Row, float]]


def measures(n: int, c: int) -> list[Measure]:
    """One function per run; each gives one or more rows of the table."""

    def sampler() -> dict[Row, float]:
        speed, in_memory, on_disk = stages.bench_sampler(n)
        return {
            ("tail sampler (in-process)", "spans/s"): speed,
            ("tail sampler memory per buffered span, memory store", "bytes"): (
                in_memory
            ),
            ("tail sampler memory per buffered span, RocksDB store", "bytes"): (
                on_disk
            ),
        }

    def end_to_end() -> dict[Row, float]:
        speed, p50_s, p99_s = pipeline.bench_end_to_end(n, c)
        return {
            ("end to end gateway -> PostgreSQL", "spans/s"): speed,
            ("ack -> row latency p50", "ms"): p50_s * 1000,
            ("ack -> row latency p99", "ms"): p99_s * 1000,
        }

    def archive() -> dict[Row, float]:
        speed, size = sinks.bench_archive(n)
        return {
            ("archive sink llm.spans -> Parquet (folder)", "spans/s"): speed,
            ("archive Parquet size", "bytes/span"): size,
        }

    return [
        lambda: {
            ("decode + normalize + price (in-process)", "spans/s"):
                stages.bench_decode(n)
        },
        lambda: {
            ("cost enrichment alone (in-process)", "spans/s"):
                stages.bench_enrichment(n)
        },
        sampler,
        lambda: {
            ("minute windows (in-process)", "spans/s"): stages.bench_aggregation(n)
        },
        lambda: {
            ("gateway OTLP/HTTP -> Kafka acked", "spans/s"):
                pipeline.bench_gateway(n, c)
        },
        end_to_end,
        lambda: {
            ("Tempo sink llm.spans -> OTLP/HTTP (Jaeger)", "spans/s"):
                sinks.bench_tempo(n)
        },
        archive,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--traces", type=int, default=4000, help="traces per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--skip-metrics-latency",
        action="store_true",
        help="leave out the ack-to-metric run (it waits a window, over a minute)",
    )
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    for measure in measures(args.traces, args.concurrency):
        runs = [measure() for _ in range(args.repeat)]
        for (what, unit), _ in runs[0].items():
            value = statistics.median(run[(what, unit)] for run in runs)
            rows.append((what, f"{value:,.0f}", unit))
    if not args.skip_metrics_latency:
        latency_s = pipeline.bench_metrics_latency(args.traces, args.concurrency)
        rows.append(("ack -> metric row (one run)", f"{latency_s:,.1f}", "s"))

    print()
    print(
        f"LLM Observatory benchmark: {os.cpu_count()} cores, {args.traces} traces "
        f"x {SPANS_PER_TRACE} spans per run, median of {args.repeat} runs"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'stage'.ljust(width)}  {'value':>12}  unit")
    print(f"{'-' * width}  {'-' * 12}  -------")
    for name, text, unit in rows:
        print(f"{name.ljust(width)}  {text:>12}  {unit}")


if __name__ == "__main__":
    main()
