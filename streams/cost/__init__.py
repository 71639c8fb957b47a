"""Cost enrichment: price every model call of ``llm.spans`` from a catalog.

``Pricer`` turns a span's normalized GenAI record into its ``cost`` record
(``schemas/span_batch.v2.avsc``); ``cost_attributes`` renders that record as
OTLP attributes for the Tempo export. Prices come from the ``genai-prices``
catalog (``catalog``), overridden by an operator file (``overrides``); model
names are derived by ``models`` and looked up by ``lookup``; amounts are
computed in ``rates``.
"""

from streams.cost.attributes import cost_attributes
from streams.cost.pricer import STATUSES, Pricer

__all__ = ["STATUSES", "Pricer", "cost_attributes"]
