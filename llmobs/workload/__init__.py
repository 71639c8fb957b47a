"""Real instrumented SDK traffic for the pipeline: a fake provider and a driver.

``provider`` serves the OpenAI and Anthropic APIs deterministically;
``runner`` drives the official SDKs, patched by one real instrumentation
package per process, and exports the spans over OTLP; ``cli`` starts one
runner per instrumentation and sums up what each exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# instrumentation name -> the provider whose SDK it patches
INSTRUMENTATIONS: dict[str, str] = {
    "openai-v2": "openai",
    "openinference": "openai",
    "openllmetry-anthropic": "anthropic",
}


@dataclass
class RunResult:
    """What one runner process did: scenarios run and spans exported."""

    instrumentation: str
    service_name: str
    traces_exported: int = 0
    spans_exported: int = 0
    spans_failed: int = 0
    export_failures: int = 0
    scenarios_ok: int = 0
    scenarios_failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.export_failures == 0
            and self.spans_exported > 0
            and not self.scenarios_failed
        )
