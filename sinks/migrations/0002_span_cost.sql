-- Cost of each model call, priced by the streams stage (llm.spans Span.cost).
--
-- Amounts are exact decimals in cost_currency; NULL when the span was not
-- priced, with cost_status saying why (unknown_model, no_usage,
-- invalid_usage, not_llm_call) and cost_match explaining the price entry or
-- its absence. Rows written before this migration keep NULL everywhere.
-- Adding nullable columns without defaults is a catalog-only change, on
-- plain PostgreSQL partitions and on compressed TimescaleDB hypertables
-- alike, so one script serves both flavours.

ALTER TABLE llm_spans
    ADD COLUMN cost_status        text,
    ADD COLUMN cost_currency      text,
    ADD COLUMN cost_input         numeric(38, 12),
    ADD COLUMN cost_cache_read    numeric(38, 12),
    ADD COLUMN cost_cache_write   numeric(38, 12),
    ADD COLUMN cost_output        numeric(38, 12),
    ADD COLUMN cost_reasoning     numeric(38, 12),
    ADD COLUMN cost_total         numeric(38, 12),
    ADD COLUMN cost_reported      numeric(38, 12),
    ADD COLUMN cost_catalog       text,
    ADD COLUMN cost_match         text,
    ADD COLUMN cost_matched_model text;

COMMENT ON COLUMN llm_spans.cost_total IS
    'cost of the model call in cost_currency; NULL when not priced, see cost_status';
