"""OTLP ingest gateway: OTLP/HTTP and OTLP/gRPC in, Kafka topic otlp_spans out."""
