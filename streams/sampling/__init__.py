"""Tail sampling of whole traces: ``llm.spans`` in, ``llm.spans.sampled`` out.

Spans wait per trace in a changelog-backed Faust table until the trace is
complete or ``decision_wait_s`` passes; declarative policies then keep or drop
the whole trace, and late spans follow the cached decision.
"""
