"""The Tempo sink: sampled spans re-exported as OTLP/HTTP to a trace backend."""
