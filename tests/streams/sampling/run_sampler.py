"""A Faust worker running only the sampling stage, for the integration tests.

Settings come from the LLMOBS_* environment like any process; the extra
variables SAMPLER_APP_ID, SAMPLER_INPUT, SAMPLER_PARTITIONS, SAMPLER_WEB_PORT
and SAMPLER_DATA_DIR isolate one test's worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import faust

from llmobs import settings as config
from streams.sampling.agent import register
from streams.sampling.settings import SamplingSettings


def main() -> None:
    settings = config.load(SamplingSettings)
    app = faust.App(
        os.environ["SAMPLER_APP_ID"],
        broker=f"kafka://{os.environ.get('LLMOBS_KAFKA_BOOTSTRAP', '127.0.0.1:9092')}",
        datadir=os.environ["SAMPLER_DATA_DIR"],
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=int(os.environ["SAMPLER_PARTITIONS"]),
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=int(os.environ["SAMPLER_WEB_PORT"]),
        web_bind="127.0.0.1",
        broker_commit_interval=1.0,
    )
    sampler = register(app, settings, input_topic=os.environ["SAMPLER_INPUT"])
    if sampler is None:
        raise SystemExit("sampling is disabled")

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.text(sampler.metrics.prometheus())

    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
