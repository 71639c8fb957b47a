"""The sampling stage as a real Faust worker against the real broker.

Traces arrive in several batches over several partitions; the worker is
killed with SIGKILL while traces are buffered and restarted; roots and late
spans arrive afterwards. Every kept trace must come out complete, once, and
no dropped trace may come out at all, whichever local store holds the
buffer, and also when the worker comes back without its local disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

import schemas
from bench.processes import free_port
from streams.sampling.probability import passes, threshold, trace_hash
from tests.streams.sampling.spanbatches import trace_in_batches

pytestmark = pytest.mark.integration

RUNNER = Path(__file__).with_name("run_sampler.py")
POLICIES = """
policies:
  - name: errors
    type: status_code
    status_codes: [ERROR]
  - name: half
    type: probabilistic
    sampling_percentage: 50
    hash_salt: test
"""


class SamplerProcess:
    """One sampling worker subprocess; the same app id survives restarts."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["SAMPLER_WEB_PORT"])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(RUNNER)], env=self.env, stdout=log, stderr=log
        )

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def metric(self, name: str) -> float:
        """Sum of a metric's samples, 0 while the worker is not serving yet."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            text = urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            return -1.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head = line.split(" ")[0]
                if head == name or head.startswith(name + "{"):
                    total += float(line.split(" ")[-1])
        return total

    def wait_metric(
        self, name: str, check: Callable[[float], bool], timeout_s: float = 90
    ) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited, see {self.log_path}")
            value = self.metric(name)
            if value >= 0 and check(value):
                return value
            time.sleep(0.3)
        raise AssertionError(f"{name} never satisfied the check, see {self.log_path}")


@pytest.fixture
def sampler_env(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> Iterator[dict[str, str]]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    env = dict(os.environ)
    env.update(
        {
            "LLMOBS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "LLMOBS_POLICIES_FILE": str(policies),
            "LLMOBS_SAMPLED_TOPIC": new_topic("sampling-out", 3),
            "LLMOBS_DECISION_WAIT_S": "120",
            "LLMOBS_QUIET_PERIOD_S": "1",
            "LLMOBS_DECISION_TICK_S": "0.2",
            "LLMOBS_MAX_SPANS_PER_TRACE": "12",
            "SAMPLER_APP_ID": f"test-sampler-{uuid.uuid4().hex[:10]}",
            "SAMPLER_INPUT": new_topic("sampling-in", 3),
            "SAMPLER_PARTITIONS": "3",
            "SAMPLER_WEB_PORT": str(free_port()),
            "SAMPLER_DATA_DIR": str(tmp_path / "data"),
        }
    )
    yield env


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def read_sampled(
    bootstrap: str, topic: str, done: Callable[[list[dict]], bool], timeout_s: float
) -> list[dict]:
    """Records of ``topic`` until ``done`` holds and 5 s pass with nothing new."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    codec = schemas.codec("span_batch")
    records: list[dict] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if done(records) and time.monotonic() - quiet_since > 5:
                    break
                continue
            records.append(codec.decode(message.value()))
            quiet_since = time.monotonic()
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize(
    ("store", "lose_disk"),
    [("rocksdb", False), ("rocksdb", True), ("memory", False)],
    ids=["rocksdb", "rocksdb-disk-lost", "memory"],
)
def test_traces_survive_sigkill_and_come_out_complete_once(
    sampler_env: dict[str, str],
    kafka_bootstrap: str,
    tmp_path: Path,
    store: str,
    lose_disk: bool,
) -> None:
    sampler_env["LLMOBS_SAMPLING_STORE"] = store
    input_topic = sampler_env["SAMPLER_INPUT"]
    # Four batches each: two children (the last call, failed in every fourth
    # trace, comes first), then after the restart the root, then a late child.
    traces = [
        trace_in_batches(3, [[3], [2], [0], [1]], error=index % 4 == 0)
        for index in range(24)
    ]
    # Larger than max_spans_per_trace: decided early, the rest follows.
    big_id, big_batches, big_spans = trace_in_batches(
        15, [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15], [0]], error=True
    )
    expected_kept = (
        {
            trace_id
            for trace_id, _, _ in traces
            if passes(trace_hash(b"test", trace_id), threshold(0.5))
        }
        | {t[0] for t in traces[::4]}
        | {big_id}
    )
    all_spans = {trace_id: spans for trace_id, _, spans in traces}
    all_spans[big_id] = big_spans

    produce(
        kafka_bootstrap,
        input_topic,
        [(t, b) for t, batches, _ in traces for b in batches[:2]]
        + [(big_id, b) for b in big_batches[:3]],
    )
    worker = SamplerProcess(sampler_env, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_metric("llmobs_sampling_spans_held", lambda v: v == 48)
        worker.wait_metric("llmobs_sampling_forced_decisions_total", lambda v: v == 1)
        # Let a commit pass so that the restart replays nothing already decided.
        time.sleep(3)
        worker.kill()
        if lose_disk:
            # A pod rescheduled without its volume: only the changelog is left.
            shutil.rmtree(sampler_env["SAMPLER_DATA_DIR"])

        worker.start()
        worker.wait_metric("llmobs_sampling_traces_held", lambda v: v == 24)
        # Held again because the changelog kept them, not by replaying input.
        assert worker.metric("llmobs_sampling_restored_traces_total") == 24
        produce(
            kafka_bootstrap,
            input_topic,
            [(t, batches[2]) for t, batches, _ in traces] + [(big_id, big_batches[3])],
        )
        worker.wait_metric("llmobs_sampling_decisions_total", lambda v: v == 24)
        assert worker.metric("llmobs_sampling_traces_held") == 0
        produce(kafka_bootstrap, input_topic, [(t, b[3]) for t, b, _ in traces])
        worker.wait_metric("llmobs_sampling_late_spans_total", lambda v: v == 25)
    finally:
        worker.stop()

    def complete(records: list[dict]) -> bool:
        seen = {r["trace_id"] for r in records}
        return expected_kept <= seen

    records = read_sampled(
        kafka_bootstrap, sampler_env["LLMOBS_SAMPLED_TOPIC"], complete, 60
    )
    spans_of: dict[str, list[str]] = defaultdict(list)
    policies_of: dict[str, set] = defaultdict(set)
    for record in records:
        spans_of[record["trace_id"]] += [s["span_id"] for s in record["spans"]]
        policies_of[record["trace_id"]].add(
            (record["sampling_policy"], record["sampling_adjusted_count"])
        )
    assert set(spans_of) == expected_kept
    for trace_id, span_ids in spans_of.items():
        assert sorted(span_ids) == sorted(all_spans[trace_id]), trace_id
        (decision,) = policies_of[trace_id]
        assert decision in {("errors", 1.0), ("half", 2.0)}
    assert policies_of[big_id] == {("errors", 1.0)}
