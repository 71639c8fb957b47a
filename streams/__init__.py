"""Faust stream processing: otlp_spans in, normalized Avro span batches out."""
