"""Settings of the ingest gateway (`llmobs gateway`)."""

from __future__ import annotations

from llmobs.errors import ConfigError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import env_name, setting, settings_class
from llmobs.tenants import tenant_problem
from llmobs.topics import DLQ, OTLP_SPANS

MIB = 1024 * 1024


@settings_class
class GatewaySettings:
    """Where the gateway listens, where it produces, and its limits."""

    config_section = "gateway"

    http_host: str = setting(
        "127.0.0.1", "address of the OTLP/HTTP listener (0.0.0.0 for all)"
    )
    http_port: int = setting(4318, "port of the OTLP/HTTP listener (0 picks one)")
    grpc_host: str = setting(
        "127.0.0.1", "address of the OTLP/gRPC listener (0.0.0.0 for all)"
    )
    grpc_port: int = setting(4317, "port of the OTLP/gRPC listener (0 picks one)")
    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    input_topic: str = setting(
        OTLP_SPANS, "the pipeline's input topic; one message per trace"
    )
    dlq_topic: str = setting(DLQ, "dead-letter topic for rejected spans")
    max_request_bytes: int = setting(
        16 * MIB, "largest request body, compressed and decompressed"
    )
    max_inflight_bytes: int = setting(
        64 * MIB, "bytes produced but not yet confirmed before answering 429"
    )
    produce_timeout_s: float = setting(
        10.0, "time Kafka has to confirm a request's messages before 503"
    )
    retry_after_s: int = setting(2, "Retry-After sent with 429 and 503 answers")
    shutdown_grace_s: float = setting(
        15.0, "time in-flight requests get to finish on SIGTERM"
    )
    api_keys: dict[str, str] = setting(
        {}, "API key to tenant, as key1=tenantA,key2=tenantB", secret=True
    )
    require_api_key: bool = setting(False, "answer 401 to requests without a known key")

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that cannot work."""
        for name in ("http_port", "grpc_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(
                    f"setting {name} ({env_name(name)}): {port} is no port"
                )
        for name in ("max_request_bytes", "max_inflight_bytes", "produce_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} ({env_name(name)}) must be positive")
        if self.retry_after_s < 0 or self.shutdown_grace_s < 0:
            raise ConfigError(
                "settings retry_after_s and shutdown_grace_s must be >= 0"
            )
        for tenant in self.api_keys.values():
            if problem := tenant_problem(tenant):
                raise ConfigError(
                    f"setting api_keys ({env_name('api_keys')}): {problem}"
                )
        if self.require_api_key and not self.api_keys:
            raise ConfigError(
                f"setting require_api_key needs api_keys ({env_name('api_keys')})"
            )
