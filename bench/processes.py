"""Start pipeline processes as subprocesses with their own topics and ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".local" / "logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pipeline:
    """Names and ports of one isolated pipeline instance."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def input_topic(self) -> str:
        return f"bench-{self.run_id}-otlp_spans"

    @property
    def spans_topic(self) -> str:
        return f"bench-{self.run_id}-llm.spans"

    @property
    def dlq_topic(self) -> str:
        return f"bench-{self.run_id}-llm.dlq"

    @property
    def sampled_topic(self) -> str:
        return f"bench-{self.run_id}-llm.spans.sampled"

    @property
    def metrics_topic(self) -> str:
        return f"bench-{self.run_id}-llm.metrics.1m"

    @property
    def alerts_topic(self) -> str:
        return f"bench-{self.run_id}-llm.alerts"

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic of this pipeline."""
        return (
            self.input_topic,
            self.spans_topic,
            self.dlq_topic,
            self.sampled_topic,
            self.metrics_topic,
            self.alerts_topic,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, name: str = "sink") -> dict[str, str]:
        """The environment of process ``name``: every sink its own group."""
        env = dict(os.environ)
        env.update(
            {
                "LLMOBS_HTTP_PORT": str(self.http_port),
                "LLMOBS_HTTP_HOST": "127.0.0.1",
                "LLMOBS_GRPC_PORT": str(self.grpc_port),
                "LLMOBS_WEB_PORT": str(self.web_port),
                "LLMOBS_INPUT_TOPIC": self.input_topic,
                "LLMOBS_SPANS_TOPIC": self.spans_topic,
                "LLMOBS_DLQ_TOPIC": self.dlq_topic,
                "LLMOBS_SAMPLED_TOPIC": self.sampled_topic,
                "LLMOBS_METRICS_TOPIC": self.metrics_topic,
                "LLMOBS_ALERTS_TOPIC": self.alerts_topic,
                "LLMOBS_APP_ID": f"bench-{self.run_id}-streams",
                "LLMOBS_GROUP_ID": f"bench-{self.run_id}-{name}",
                "LLMOBS_DATA_DIR": str(REPO / ".local" / "bench" / self.run_id),
            }
        )
        env.update(self.extra_env)
        return env


@contextlib.contextmanager
def running(pipeline: Pipeline, *names: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``llmobs NAME`` for each name; stop them all on exit."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for name in names:
            log_path = LOG_DIR / f"bench-{pipeline.run_id}-{name}.log"
            with open(log_path, "ab") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "llmobs.cli", name],
                        env=pipeline.env(name),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=REPO,
                    )
                )
        if "gateway" in names:
            wait_http(f"{pipeline.endpoint}/healthz", procs)
        if "streams" in names:
            wait_http(f"http://127.0.0.1:{pipeline.web_port}/metrics", procs)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(
    url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 90
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{proc.args!r} exited with {proc.returncode}; see .local/logs"
                )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")
