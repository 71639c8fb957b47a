"""LLM Observatory: OTLP traces of LLM applications through Kafka to storage."""

__version__ = "0.1.0"
