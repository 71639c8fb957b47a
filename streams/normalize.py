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
  includes reasoning (the OTel semantics). ``_reconcile_tokens`` corrects
  counts that follow other semantics, as known from the instrumentation's
  scope or, failing that, as the counts themselves prove.
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
  ``total_tokens_recomputed``, ``nul_replaced``, ``normalize_failed``).

Request parameters such as ``max_tokens`` (where ``-1`` means unset) are not
normalized here; they stay in the span's attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from streams.conventions import (
    CACHE_EXCLUSIVE_SCOPES,
    CONVENTION_ORDER,
    FIELD_SOURCES,
    GENAI_FIELDS,
    GENAI_PREFIXES,
    KEY_CONVENTION,
    PREFIX_CONVENTIONS,
    REASONING_APART_PROVIDERS,
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
    scope_name: str = "",
    scope_version: str = "",
) -> dict[str, Any] | None:
    """The GenAI record of a span, or None when no GenAI attribute is present.

    ``scope_name`` and ``scope_version`` name the instrumentation that emitted
    the span (its OTLP instrumentation scope): some report tokens their own way.
    """
    try:
        conventions = _recognise(attributes)
        if conventions is None:
            return None
        scope = (scope_name, scope_version)
        record = _normalize(attributes, conventions, span_name, status_code, scope)
        return _without_nul(record)
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


def _without_nul(record: dict[str, Any]) -> dict[str, Any]:
    """NUL characters of the normalized text replaced, and flagged.

    These fields key rows, metric windows and Redis counters, and no text
    column or key of those stores holds NUL; the original attribute keeps it.
    """
    replaced = False
    for name, value in record.items():
        if isinstance(value, str) and "\x00" in value:
            record[name] = clean_text(value)
            replaced = True
        elif name == "finish_reasons" and any("\x00" in r for r in value):
            record[name] = [clean_text(r) for r in value]
            replaced = True
    if replaced:
        record["issues"].append("nul_replaced")
    return record


def clean_text(text: str) -> str:
    """``text`` with each NUL character replaced by U+FFFD."""
    return text.replace("\x00", "\ufffd")


def _empty_record() -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(GENAI_FIELDS)
    record.update(finish_reasons=[], conventions=[], source_attributes={}, issues=[])
    return record


def _normalize(
    attributes: Mapping[str, Any],
    conventions: list[str],
    span_name: str,
    status_code: str,
    scope: tuple[str, str],
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
    _reconcile_tokens(tokens, issues, scope, record["provider"])
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


def _reconcile_tokens(
    tokens: dict[str, int | None],
    issues: list[str],
    scope: tuple[str, str],
    provider: str | None,
) -> None:
    """Bring token counts to the OTel semantics, correcting each at most once.

    Input should include cache reads and writes. It does not when the span
    comes from an instrumentation of ``CACHE_EXCLUSIVE_SCOPES``; for any
    other, only proof counts: input < cache_read + cache_write, or a reported
    total that equals the counts with the cache added. Then cache_read +
    cache_write is added to input once. Output should include reasoning; it
    did not when output < reasoning, or when the reported total counts
    reasoning on top of output (Gemini's totals include thoughts that its
    output count leaves out); then reasoning is added once. A total that
    could prove either is read by the provider: reasoning for those that
    report it apart, cache for the others. A reported total that was the sum
    of the uncorrected counts is recomputed; a missing total is input +
    output when both are known.
    """
    input_tokens = tokens["input_tokens"]
    output_tokens = tokens["output_tokens"]
    total = tokens["total_tokens"]
    cached = (tokens["cache_read_tokens"] or 0) + (tokens["cache_write_tokens"] or 0)
    reasoning = tokens["reasoning_tokens"] or 0

    add_cache = input_tokens is not None and cached > 0
    add_cache = add_cache and (
        _cache_exclusive_scope(*scope) or (input_tokens or 0) < cached
    )
    add_reasoning = output_tokens is not None and output_tokens < reasoning

    reported_sum = None
    if input_tokens is not None and output_tokens is not None:
        reported_sum = input_tokens + output_tokens
    if total is not None and reported_sum is not None:
        add_cache, add_reasoning = _proven_by_total(
            total - reported_sum,
            cached,
            reasoning,
            (add_cache, add_reasoning),
            provider in REASONING_APART_PROVIDERS,
        )

    if add_cache and input_tokens is not None:
        input_tokens += cached
        issues.append("input_tokens_excluded_cache")
    if add_reasoning and output_tokens is not None:
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


def _proven_by_total(
    excess: int,
    cached: int,
    reasoning: int,
    decided: tuple[bool, bool],
    reasoning_apart: bool,
) -> tuple[bool, bool]:
    """(add cache, add reasoning) given how far the reported total exceeds
    input + output, and what is ``decided`` to be added already."""
    add_cache, add_reasoning = decided
    excess -= (cached if add_cache else 0) + (reasoning if add_reasoning else 0)
    cached = 0 if add_cache else cached
    reasoning = 0 if add_reasoning else reasoning
    if excess <= 0:
        return decided
    if cached and reasoning and excess == cached + reasoning:
        return True, True
    cache_fits = bool(cached) and excess == cached
    reasoning_fits = bool(reasoning) and excess == reasoning
    if cache_fits and reasoning_fits:
        cache_fits, reasoning_fits = not reasoning_apart, reasoning_apart
    return add_cache or cache_fits, add_reasoning or reasoning_fits


def _cache_exclusive_scope(name: str, version: str) -> bool:
    """Whether instrumentation scope (name, version) reports input without cache."""
    if not name:
        return False
    parsed = _version(version)
    for scope, first, fixed in CACHE_EXCLUSIVE_SCOPES:
        if scope != name:
            continue
        if first is None and fixed is None:
            return True
        if parsed is None:
            continue
        after_first = first is None or parsed >= (_version(first) or ())
        before_fixed = fixed is None or parsed < (_version(fixed) or ())
        if after_first and before_fixed:
            return True
    return False


def _version(text: str) -> tuple[int, ...] | None:
    """The leading numeric release of a version string ("0.1.2b1" -> (0, 1, 2))."""
    parts = []
    for part in text.strip().lstrip("v").split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(parts) or None
