-- Windowed LLM metrics, on TimescaleDB (used instead of the plain script
-- when the extension is present; not exercised by the test suite, which
-- runs on plain PostgreSQL).
--
-- llm_metrics_1m holds one row per one-minute bucket and key (tenant,
-- service, provider, model, operation), summed over every MetricWindow
-- record of llm.metrics.1m: windows of several input partitions and their
-- late corrections. llm_metrics_1h and llm_metrics_1d are continuous
-- aggregates over it, which TimescaleDB refreshes (the sink writes
-- llm_metrics_1m only); 0004 rebuilds them with currency and refresh
-- policies that reach late corrections.
-- llm_metrics_1m is a hypertable with one-day chunks, compressed after 7
-- days and dropped after 90; the rollups are kept for two years. Needs
-- TimescaleDB 2.11 or later: the sink upserts (INSERT ... ON CONFLICT) into
-- compressed chunks.
--
-- Idempotent writes: llm_metrics_contributions records the identity of
-- every record added (source partition, window, key, first input offset);
-- the sink adds a record only when inserting its identity inserted a row.
--
-- Latency and time-to-first-token are DDSketch bins as jsonb
-- {"<key>": count, "z": zeros}: merge with llmobs_sketch_agg, read with
-- llmobs_sketch_quantile (within 1% of the true value).

CREATE FUNCTION llmobs_sketch_merge(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
    FROM (
        SELECT k, sum(n) AS n
        FROM (
            SELECT key AS k, value::bigint AS n FROM jsonb_each_text(coalesce(a, '{}'))
            UNION ALL
            SELECT key, value::bigint FROM jsonb_each_text(coalesce(b, '{}'))
        ) bins
        GROUP BY k
    ) merged
$$;

CREATE AGGREGATE llmobs_sketch_agg(jsonb) (
    SFUNC = llmobs_sketch_merge,
    STYPE = jsonb,
    COMBINEFUNC = llmobs_sketch_merge,
    INITCOND = '{}',
    PARALLEL = SAFE
);

-- The value at rank q * (count - 1); keys map to values as DDSketch's
-- logarithmic mapping with relative accuracy 0.01 (gamma = 1.01 / 0.99).
CREATE FUNCTION llmobs_sketch_quantile(sketch jsonb, q double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH bins AS (
        SELECT CASE WHEN key = 'z' THEN NULL ELSE key::int END AS k,
               value::bigint AS n
        FROM jsonb_each_text(coalesce(sketch, '{}'))
    ),
    ranked AS (
        SELECT k, sum(n) OVER (ORDER BY k NULLS FIRST) AS seen,
               sum(n) OVER () AS total
        FROM bins
    )
    SELECT CASE WHEN k IS NULL THEN 0.0
                ELSE power(1.01 / 0.99, k) * 2 / (1 + 1.01 / 0.99) END
    FROM ranked
    WHERE seen > q * (total - 1)
    ORDER BY k NULLS FIRST
    LIMIT 1
$$;

CREATE TABLE llm_metrics_contributions (
    contribution_id text        NOT NULL,
    bucket          timestamptz NOT NULL,
    kind            text        NOT NULL,
    written_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contribution_id, bucket)
);
SELECT create_hypertable(
    'llm_metrics_contributions', 'bucket',
    chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE
);

CREATE TABLE llm_metrics_1m (
    bucket              timestamptz      NOT NULL,
    tenant              text             NOT NULL,
    service             text             NOT NULL,
    provider            text             NOT NULL,
    model               text             NOT NULL,
    operation           text             NOT NULL,
    requests            bigint           NOT NULL,
    errors              bigint           NOT NULL,
    input_tokens        bigint           NOT NULL,
    output_tokens       bigint           NOT NULL,
    cache_read_tokens   bigint           NOT NULL,
    reasoning_tokens    bigint           NOT NULL,
    cost                numeric(38, 12)  NOT NULL,
    priced_requests     bigint           NOT NULL,
    latency_sum_s       double precision NOT NULL,
    ttft_count          bigint           NOT NULL,
    ttft_sum_s          double precision NOT NULL,
    timed_output_tokens bigint           NOT NULL,
    timed_output_s      double precision NOT NULL,
    latency_sketch      jsonb            NOT NULL,
    ttft_sketch         jsonb            NOT NULL,
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, tenant, service, provider, model, operation)
);

SELECT create_hypertable(
    'llm_metrics_1m', 'bucket',
    chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE
);

COMMENT ON TABLE llm_metrics_1m IS
    'Model requests per minute and key, from every span before sampling; '
    'hypertable with one-day chunks.';

CREATE MATERIALIZED VIEW llm_metrics_1h
WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
    tenant, service, provider, model, operation,
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
GROUP BY 1, tenant, service, provider, model, operation
WITH NO DATA;

SELECT add_continuous_aggregate_policy('llm_metrics_1h',
    start_offset => INTERVAL '3 hours', end_offset => NULL,
    schedule_interval => INTERVAL '5 minutes');

CREATE MATERIALIZED VIEW llm_metrics_1d
WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
    tenant, service, provider, model, operation,
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
GROUP BY 1, tenant, service, provider, model, operation
WITH NO DATA;

SELECT add_continuous_aggregate_policy('llm_metrics_1d',
    start_offset => INTERVAL '3 days', end_offset => NULL,
    schedule_interval => INTERVAL '1 hour');

ALTER TABLE llm_metrics_1m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant',
    timescaledb.compress_orderby = 'bucket DESC, service, provider, model, operation'
);
SELECT add_compression_policy('llm_metrics_1m', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('llm_metrics_1m', INTERVAL '90 days', if_not_exists => TRUE);
SELECT add_retention_policy('llm_metrics_1h', INTERVAL '2 years', if_not_exists => TRUE);
SELECT add_retention_policy('llm_metrics_1d', INTERVAL '2 years', if_not_exists => TRUE);
SELECT add_retention_policy(
    'llm_metrics_contributions', INTERVAL '90 days', if_not_exists => TRUE
);

-- The questions users ask first; see the README's Metrics section.
CREATE VIEW llm_cost_by_model_daily AS
SELECT bucket AS day, tenant, provider, model,
       sum(cost) AS cost, sum(requests) AS requests,
       sum(priced_requests) AS priced_requests,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
FROM llm_metrics_1d
GROUP BY bucket, tenant, provider, model;

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
SELECT tenant, conversation_id, sum(cost_total) AS cost, count(*) AS requests,
       min(start_time) AS first_seen, max(end_time) AS last_seen
FROM llm_spans
WHERE conversation_id IS NOT NULL
GROUP BY tenant, conversation_id;
