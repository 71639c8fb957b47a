-- Windowed LLM metrics keyed by currency too, on TimescaleDB (used instead
-- of the plain script when the extension is present; not exercised by the
-- test suite, which runs on plain PostgreSQL).
--
-- Needs TimescaleDB 2.11 or later, as 0003 does: the sink upserts into
-- llm_metrics_1m, whose chunks are compressed after 7 days, and INSERT ...
-- ON CONFLICT into compressed chunks arrived in 2.11.
--
-- Costs priced in different currencies (an operator's price file may say
-- EUR) never share a row: llm_metrics_1m gets a currency column in its
-- primary key. Its chunks are decompressed for the change and compressed
-- again by the policy. Rows written before hold USD prices, the catalog's
-- currency; unpriced requests count under USD.
--
-- Continuous aggregates cannot gain a GROUP BY column, so llm_metrics_1h and
-- llm_metrics_1d are built again with currency, real-time
-- (materialized_only = false: the newest buckets are read from
-- llm_metrics_1m) and refreshed over the last 80 days, so late corrections
-- to any bucket that llm_metrics_1m still holds (90 days) reach them; a
-- refresh reaching past that would erase rollups whose raw rows are gone.
-- The aggregates built by 0003 keep the history from before this migration
-- as llm_metrics_1h_before_currency and llm_metrics_1d_before_currency,
-- frozen (no refresh), until their two-year retention drops it.
--
-- llm_top_conversations_by_cost counts model requests only and sums cost
-- per currency. llm_metrics_contributions stays a hypertable pruned by its
-- retention policy.

SELECT remove_compression_policy('llm_metrics_1m', if_exists => TRUE);
SELECT decompress_chunk(chunk, if_compressed => TRUE)
FROM show_chunks('llm_metrics_1m') AS chunk;
ALTER TABLE llm_metrics_1m SET (timescaledb.compress = false);

ALTER TABLE llm_metrics_1m
    ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'USD';
ALTER TABLE llm_metrics_1m DROP CONSTRAINT IF EXISTS llm_metrics_1m_pkey;
ALTER TABLE llm_metrics_1m ADD CONSTRAINT llm_metrics_1m_pkey
    PRIMARY KEY (bucket, tenant, service, provider, model, operation, currency);

ALTER TABLE llm_metrics_1m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant',
    timescaledb.compress_orderby =
        'bucket DESC, service, provider, model, operation, currency'
);
SELECT add_compression_policy(
    'llm_metrics_1m', INTERVAL '7 days', if_not_exists => TRUE
);

-- The views read the aggregates replaced below.
DROP VIEW IF EXISTS llm_cost_by_model_daily;
DROP VIEW IF EXISTS llm_latency_by_model_hourly;
DROP VIEW IF EXISTS llm_error_rate_by_provider_hourly;
DROP VIEW IF EXISTS llm_top_conversations_by_cost;

SELECT remove_continuous_aggregate_policy('llm_metrics_1h', if_exists => TRUE);
SELECT remove_continuous_aggregate_policy('llm_metrics_1d', if_exists => TRUE);
ALTER MATERIALIZED VIEW llm_metrics_1h SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW llm_metrics_1d SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW llm_metrics_1h RENAME TO llm_metrics_1h_before_currency;
ALTER MATERIALIZED VIEW llm_metrics_1d RENAME TO llm_metrics_1d_before_currency;

CREATE MATERIALIZED VIEW llm_metrics_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
    tenant, service, provider, model, operation, currency,
    sum(requests) AS requests, sum(errors) AS errors,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost) AS cost, sum(priced_requests) AS priced_requests,
    sum(latency_sum_s) AS latency_sum_s, sum(ttft_count) AS ttft_count,
    sum(ttft_sum_s) AS ttft_sum_s,
    sum(timed_output_tokens) AS timed_output_tokens,
    sum(timed_output_s) AS timed_output_s,
    llmobs_sketch_agg(latency_sketch) AS latency_sketch,
    llmobs_sketch_agg(ttft_sketch) AS ttft_sketch
FROM llm_metrics_1m
GROUP BY 1, tenant, service, provider, model, operation, currency
WITH NO DATA;

SELECT add_continuous_aggregate_policy('llm_metrics_1h',
    start_offset => INTERVAL '80 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '5 minutes');

CREATE MATERIALIZED VIEW llm_metrics_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
    tenant, service, provider, model, operation, currency,
    sum(requests) AS requests, sum(errors) AS errors,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost) AS cost, sum(priced_requests) AS priced_requests,
    sum(latency_sum_s) AS latency_sum_s, sum(ttft_count) AS ttft_count,
    sum(ttft_sum_s) AS ttft_sum_s,
    sum(timed_output_tokens) AS timed_output_tokens,
    sum(timed_output_s) AS timed_output_s,
    llmobs_sketch_agg(latency_sketch) AS latency_sketch,
    llmobs_sketch_agg(ttft_sketch) AS ttft_sketch
FROM llm_metrics_1m
GROUP BY 1, tenant, service, provider, model, operation, currency
WITH NO DATA;

SELECT add_continuous_aggregate_policy('llm_metrics_1d',
    start_offset => INTERVAL '80 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour');

SELECT add_retention_policy('llm_metrics_1h', INTERVAL '2 years', if_not_exists => TRUE);
SELECT add_retention_policy('llm_metrics_1d', INTERVAL '2 years', if_not_exists => TRUE);

CREATE VIEW llm_cost_by_model_daily AS
SELECT bucket AS day, tenant, provider, model, currency,
       sum(cost) AS cost, sum(requests) AS requests,
       sum(priced_requests) AS priced_requests,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
FROM llm_metrics_1d
GROUP BY bucket, tenant, provider, model, currency;

CREATE VIEW llm_latency_by_model_hourly AS
SELECT bucket AS hour, tenant, provider, model, sum(requests) AS requests,
       llmobs_sketch_quantile(llmobs_sketch_agg(latency_sketch), 0.5) AS p50_s,
       llmobs_sketch_quantile(llmobs_sketch_agg(latency_sketch), 0.95) AS p95_s,
       llmobs_sketch_quantile(llmobs_sketch_agg(latency_sketch), 0.99) AS p99_s,
       llmobs_sketch_quantile(llmobs_sketch_agg(ttft_sketch), 0.95) AS ttft_p95_s
FROM llm_metrics_1h
GROUP BY bucket, tenant, provider, model;

CREATE VIEW llm_error_rate_by_provider_hourly AS
SELECT bucket AS hour, tenant, provider, sum(requests) AS requests,
       sum(errors) AS errors,
       sum(errors)::double precision / nullif(sum(requests), 0) AS error_rate
FROM llm_metrics_1h
GROUP BY bucket, tenant, provider;

CREATE VIEW llm_top_conversations_by_cost AS
SELECT tenant, conversation_id, coalesce(cost_currency, 'USD') AS currency,
       sum(cost_total) AS cost, count(*) AS requests,
       min(start_time) AS first_seen, max(end_time) AS last_seen
FROM llm_spans
WHERE conversation_id IS NOT NULL
  AND operation IN ('chat', 'text_completion', 'generate_content', 'embeddings')
GROUP BY tenant, conversation_id, coalesce(cost_currency, 'USD');
