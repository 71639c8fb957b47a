-- llm_spans: one row per span of llm.spans, on TimescaleDB.
--
-- Used instead of 0001_llm_spans.sql when the timescaledb extension is
-- available. A hypertable on start_time with one-day chunks, created by
-- TimescaleDB as rows arrive, so the sink creates no partitions itself.
--
-- Idempotent writes: a hypertable can only enforce a unique key that contains
-- the time column, so the natural key is (tenant, trace_id, span_id,
-- start_time). A replayed span carries the same start time it had the first
-- time, so in effect this is unique on tenant + trace id + span id (tenants
-- never see or drop each other's spans), and
-- INSERT ... ON CONFLICT DO NOTHING makes replays insert nothing.

CREATE TABLE llm_spans (
    tenant                text             NOT NULL,
    trace_id              text             NOT NULL,
    span_id               text             NOT NULL,
    parent_span_id        text,
    name                  text             NOT NULL,
    kind                  text             NOT NULL,
    service_name          text             NOT NULL,
    start_time            timestamptz      NOT NULL,
    end_time              timestamptz      NOT NULL,
    duration_ms           double precision NOT NULL,
    status_code           text             NOT NULL,
    status_message        text             NOT NULL DEFAULT '',
    -- Normalized GenAI fields; all NULL on spans that are not model calls.
    operation             text,
    provider              text,
    request_model         text,
    response_model        text,
    input_tokens          bigint,
    output_tokens         bigint,
    cache_read_tokens     bigint,
    cache_write_tokens    bigint,
    reasoning_tokens      bigint,
    total_tokens          bigint,
    finish_reasons        text[],
    time_to_first_token_s double precision,
    conversation_id       text,
    streaming             boolean,
    error_type            text,
    reported_cost         numeric,
    conventions           text[],
    normalization_issues  text[],
    -- normalized field name -> original attribute name it was read from
    genai_sources         jsonb,
    attributes            jsonb            NOT NULL,
    resource_attributes   jsonb            NOT NULL,
    events                jsonb            NOT NULL,
    links_count           integer          NOT NULL DEFAULT 0,
    received_at           timestamptz,
    written_at            timestamptz      NOT NULL DEFAULT now(),
    -- input position of the record, topic[partition] offset
    source                text,
    CONSTRAINT llm_spans_natural_key UNIQUE (tenant, trace_id, span_id, start_time)
);

SELECT create_hypertable(
    'llm_spans',
    'start_time',
    chunk_time_interval => INTERVAL '1 day',
    if_not_exists => TRUE
);

CREATE INDEX llm_spans_tenant_time_idx ON llm_spans (tenant, start_time);
CREATE INDEX llm_spans_model_time_idx
    ON llm_spans (provider, request_model, start_time);
CREATE INDEX llm_spans_trace_idx ON llm_spans (trace_id);

COMMENT ON TABLE llm_spans IS
    'One row per span from llm.spans; hypertable with one-day chunks '
    'on start_time; unique on (tenant, trace_id, span_id, start_time).';

-- Chunks older than a week are compressed, segmented by tenant so that
-- per-tenant queries read only their own segments. Retention is left to the
-- operator: SELECT add_retention_policy('llm_spans', INTERVAL '90 days');
ALTER TABLE llm_spans SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant',
    timescaledb.compress_orderby = 'start_time DESC, trace_id, span_id'
);
SELECT add_compression_policy('llm_spans', INTERVAL '7 days', if_not_exists => TRUE);
