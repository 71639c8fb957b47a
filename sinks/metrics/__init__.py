"""The metrics sink: llm.metrics.1m into PostgreSQL, Redis counters, alerts."""
