"""Sink workers: internal topics into PostgreSQL / TimescaleDB."""
