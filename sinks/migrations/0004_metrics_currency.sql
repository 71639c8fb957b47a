-- Windowed LLM metrics keyed by currency too, on plain PostgreSQL.
--
-- Costs priced in different currencies (an operator's price file may say
-- EUR) never share a row: llm_metrics_1m, llm_metrics_1h and llm_metrics_1d
-- get a currency column in their primary keys, and the views that sum cost
-- group by it. Rows written before hold USD prices, the catalog's currency;
-- unpriced requests count under USD.
--
-- llm_top_conversations_by_cost counts model requests only (agent and tool
-- spans of a conversation are not requests) and sums cost per currency.
--
-- llm_metrics_contributions is pruned by the sink on written_at (setting
-- contributions_retention_days), hence the index.
--
-- Every statement can run again without harm.

ALTER TABLE llm_metrics_1m
    ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'USD';
ALTER TABLE llm_metrics_1m DROP CONSTRAINT IF EXISTS llm_metrics_1m_pkey;
ALTER TABLE llm_metrics_1m ADD CONSTRAINT llm_metrics_1m_pkey
    PRIMARY KEY (bucket, tenant, service, provider, model, operation, currency);

ALTER TABLE llm_metrics_1h
    ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'USD';
ALTER TABLE llm_metrics_1h DROP CONSTRAINT IF EXISTS llm_metrics_1h_pkey;
ALTER TABLE llm_metrics_1h ADD CONSTRAINT llm_metrics_1h_pkey
    PRIMARY KEY (bucket, tenant, service, provider, model, operation, currency);

ALTER TABLE llm_metrics_1d
    ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'USD';
ALTER TABLE llm_metrics_1d DROP CONSTRAINT IF EXISTS llm_metrics_1d_pkey;
ALTER TABLE llm_metrics_1d ADD CONSTRAINT llm_metrics_1d_pkey
    PRIMARY KEY (bucket, tenant, service, provider, model, operation, currency);

CREATE INDEX IF NOT EXISTS llm_metrics_contributions_written_at
    ON llm_metrics_contributions (written_at);

DROP VIEW IF EXISTS llm_cost_by_model_daily;
CREATE VIEW llm_cost_by_model_daily AS
SELECT bucket AS day, tenant, provider, model, currency,
       sum(cost) AS cost, sum(requests) AS requests,
       sum(priced_requests) AS priced_requests,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
FROM llm_metrics_1d
GROUP BY bucket, tenant, provider, model, currency;

DROP VIEW IF EXISTS llm_top_conversations_by_cost;
CREATE VIEW llm_top_conversations_by_cost AS
SELECT tenant, conversation_id, coalesce(cost_currency, 'USD') AS currency,
       sum(cost_total) AS cost, count(*) AS requests,
       min(start_time) AS first_seen, max(end_time) AS last_seen
FROM llm_spans
WHERE conversation_id IS NOT NULL
  AND operation IN ('chat', 'text_completion', 'generate_content', 'embeddings')
GROUP BY tenant, conversation_id, coalesce(cost_currency, 'USD');
