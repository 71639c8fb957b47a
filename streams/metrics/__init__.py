"""Windowed LLM metrics: every span of llm.spans, before sampling, per minute."""
