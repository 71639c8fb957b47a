"""Normalize the GenAI attributes of one span, whatever convention emitted them.

The decode stage calls ``normalize_genai`` for every span; the result fills the
``GenAI`` record of ``schemas/span_batch.v1.avsc`` (or stays null for spans
that carry no GenAI attribute). Attribute names and spellings live in
``streams.conventions``; this module holds the rules:

- Precedence: for each field the attributes of ``FIELD_SOURCES`` are tried in
  order (OTel GenAI, deprecated OTel, OpenLLMetry, OpenInference, OpenLIT);
  the first one holding a usable value wins and is named in
  ``source_attributes``. Empty strings, ``None`` and ``"unknown"`` operations
  count as unset, so a later convention may supply the field.
- Tokens: ``input_tokens`` includes cache reads and writes, ``output_tokens``
  includes reasoning (the OTel semantics). See ``_reconcile_tokens`` for the
  one correction applied where an instrumentation provably used Anthropic's
  cache-exclusive semantics.
- Time to first token is in seconds (OTel and OpenLIT both say so). A value
  above ``TTFT_MAX_SECONDS`` is taken to be milliseconds and divided by 1000.
- ``error_type`` is the ``error.type`` attribute; failing that, a span whose
  status is ERROR gets ``"_OTHER"``, the OTel fallback value for an error of
  unknown type.
- Odd values never raise: each correction or rejected value is named in
  ``issues`` (``tokens_as_string``, ``invalid_tokens:<field>``,
  ``invalid_value:<field>``, ``number_as_string:<field>``,
  ``bool_as_string:streaming``, ``value_truncated:<field>``,
  ``finish_reasons_as_string``, ``finish_reasons_as_json``,
  ``provider_normalized``, ``operation_normalized``,
  ``operation_from_span_name``, ``ttft_assumed_ms``,
  ``input_tokens_excluded_cache``, ``output_tokens_excluded_reasoning``,
  ``total_tokens_recomputed``, ``normalize_failed``).

Request parameters such as ``max_tokens`` (where ``-1`` means unset) are not
normalized here; they stay in the span's attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from streams.conventions import (
    CONVENTION_ORDER,
    FIELD_SOURCES,
    GENAI_FIELDS,
    GENAI_PREFIXES,
    KEY_CONVENTION,
    PREFIX_CONVENTIONS,
    TOKEN_FIELDS,
)
from streams.parsers import (
    SOURCE_PARSERS,
    Parser,
    _bool,
    _finish_reasons,
    _fit_long,
    _number,
    _operation,
    _operation_from_span_name,
    _provider,
    _text,
    _tokens,
    _ttft,
)

log = logging.getLogger(__name__)

ERROR_TYPE_FALLBACK = "_OTHER"
_ERROR_STATUSES = frozenset({"ERROR", "STATUS_CODE_ERROR"})

# Convention of each GenAI attribute name matched by prefix, filled lazily
# ("" when GenAI but of no identifiable convention); bounded because prompt
# attributes carry indexes (gen_ai.prompt.17.content).
_prefix_cache: dict[str, str] = {}
_PREFIX_CACHE_MAX = 4096


def normalize_genai(
    attributes: Mapping[str, Any],
    *,
    span_name: str = "",
    status_code: str = "UNSET",
) -> dict[str, Any] | None:
    """The GenAI record of a span, or None when no GenAI attribute is present."""
    try:
        conventions = _recognise(attributes)
        if conventions is None:
            return None
        return _normalize(attributes, conventions, span_name, status_code)
    except Exception as exc:  # a span must never stop the stage
        log.warning("GenAI normalization failed: %s", type(exc).__name__)
        record = _empty_record()
        record["issues"] = ["normalize_failed"]
        return record


def _recognise(attributes: Mapping[str, Any]) -> list[str] | None:
    """Conventions present on the span, or None when it is not a GenAI span."""
    found: set[str] = set()
    genai = False
    for key in attributes:
        convention = KEY_CONVENTION.get(key)
        if convention is None:
            convention = _prefix_convention(key)
            if convention is None:
                continue
        genai = True
        if convention:
            found.add(convention)
    if not genai:
        return None
    return [name for name in CONVENTION_ORDER if name in found]


def _prefix_convention(key: object) -> str | None:
    if not isinstance(key, str) or not key.startswith(GENAI_PREFIXES):
        return None
    cached = _prefix_cache.get(key)
    if cached is not None:
        return cached

    convention = ""
    for prefix, name in PREFIX_CONVENTIONS:
        if key.startswith(prefix):
            convention = name
            break

    if len(_prefix_cache) >= _PREFIX_CACHE_MAX:
        _prefix_cache.clear()
    _prefix_cache[key] = convention
    return convention


def _empty_record() -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(GENAI_FIELDS)
    record.update(finish_reasons=[], conventions=[], source_attributes={}, issues=[])
    return record


def _normalize(
    attributes: Mapping[str, Any],
    conventions: list[str],
    span_name: str,
    status_code: str,
) -> dict[str, Any]:
    issues: list[str] = []
    sources: dict[str, str] = {}

    def first(field: str, parse: Parser) -> Any:
        for name, _ in FIELD_SOURCES[field]:
            value = attributes.get(name)
            if value is None:
                continue
            parser = SOURCE_PARSERS.get(name, parse)
            parsed = parser(value, field, issues)
            if parsed is not None:
                sources[field] = name
                return parsed
        return None

    record = _empty_record()
    record["conventions"] = conventions
    record["source_attributes"] = sources
    record["issues"] = issues

    record["operation"] = first("operation", _operation)
    if record["operation"] is None:
        record["operation"] = _operation_from_span_name(span_name, issues)
    record["provider"] = first("provider", _provider)
    record["request_model"] = first("request_model", _text)
    record["response_model"] = first("response_model", _text)

    tokens = {field: first(field, _tokens) for field in TOKEN_FIELDS}
    _reconcile_tokens(tokens, issues)
    record.update(tokens)

    record["finish_reasons"] = first("finish_reasons", _finish_reasons) or []
    record["time_to_first_token_s"] = first("time_to_first_token_s", _ttft)
    record["conversation_id"] = first("conversation_id", _text)
    record["streaming"] = first("streaming", _bool)
    record["reported_cost"] = first("reported_cost", _number)

    record["error_type"] = first("error_type", _text)
    if record["error_type"] is None and status_code in _ERROR_STATUSES:
        record["error_type"] = ERROR_TYPE_FALLBACK
    return record


def _reconcile_tokens(tokens: dict[str, int | None], issues: list[str]) -> None:
    """Bring token counts to the OTel semantics, correcting at most once.

    Input should include cache reads and writes. It provably excluded them
    (Anthropic's API semantics copied verbatim) when either
      - input < cache_read + cache_write, or
      - the reported total equals input + cache_read + cache_write + output
        while differing from input + output;
    then cache_read + cache_write is added to input once. None of the
    installed instrumentations (OpenLLMetry anthropic, OTel openai-v2,
    OpenInference openai) excludes cache in its final attributes, so no
    convention is corrected without such proof. Likewise output should
    include reasoning; output < reasoning proves it did not (Gemini reports
    thoughts apart), and reasoning is added once. A reported total that was
    the sum of the uncorrected counts is recomputed; a missing total is
    input + output when both are known.
    """
    input_tokens = tokens["input_tokens"]
    output_tokens = tokens["output_tokens"]
    total = tokens["total_tokens"]
    cached = (tokens["cache_read_tokens"] or 0) + (tokens["cache_write_tokens"] or 0)
    reasoning = tokens["reasoning_tokens"] or 0
    reported_sum = None
    if input_tokens is not None and output_tokens is not None:
        reported_sum = input_tokens + output_tokens

    if input_tokens is not None and cached:
        below_cache = input_tokens < cached
        total_counts_cache = (
            total is not None
            and reported_sum is not None
            and total == reported_sum + cached
        )
        if below_cache or total_counts_cache:
            input_tokens += cached
            issues.append("input_tokens_excluded_cache")

    if output_tokens is not None and output_tokens < reasoning:
        output_tokens += reasoning
        issues.append("output_tokens_excluded_reasoning")

    corrected_sum = None
    if input_tokens is not None and output_tokens is not None:
        corrected_sum = input_tokens + output_tokens
    if total is None:
        total = corrected_sum
    elif total == reported_sum and corrected_sum != reported_sum:
        total = corrected_sum
        issues.append("total_tokens_recomputed")

    tokens["input_tokens"] = _fit_long(input_tokens, "input_tokens", issues)
    tokens["output_tokens"] = _fit_long(output_tokens, "output_tokens", issues)
    tokens["total_tokens"] = _fit_long(total, "total_tokens", issues)
