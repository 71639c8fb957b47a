-- llm_spans: one row per span of llm.spans, on plain PostgreSQL.
--
-- Range-partitioned by start_time into daily partitions named
-- llm_spans_pYYYYMMDD. The sink creates each partition on demand before it
-- writes into it; there is no default partition, so a row whose day has no
-- partition is an error instead of a silent pile-up in a catch-all table.
--
-- Idempotent writes: a partitioned table can only enforce a unique key that
-- contains the partition key, so the natural key is (tenant, trace_id,
-- span_id, start_time). A replayed span carries the same start time it had
-- the first time, so in effect this is unique on tenant + trace id + span id
-- (tenants never see or drop each other's spans), and
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
) PARTITION BY RANGE (start_time);

CREATE INDEX llm_spans_tenant_time_idx ON llm_spans (tenant, start_time);
CREATE INDEX llm_spans_model_time_idx
    ON llm_spans (provider, request_model, start_time);
CREATE INDEX llm_spans_trace_idx ON llm_spans (trace_id);

COMMENT ON TABLE llm_spans IS
    'One row per span from llm.spans; daily partitions llm_spans_pYYYYMMDD '
    'created by the sink; unique on (tenant, trace_id, span_id, start_time).';
