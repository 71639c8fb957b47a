"""Benchmarks of the pipeline against the real local services (``make bench``)."""
