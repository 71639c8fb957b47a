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
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import orjson

from streams.conventions import (
    CONVENTION_ORDER,
    FALSE_STRINGS,
    FIELD_SOURCES,
    GENAI_FIELDS,
    GENAI_PREFIXES,
    KEY_CONVENTION,
    OPERATION_ALIASES,
    OPERATIONS,
    PREFIX_CONVENTIONS,
    PROVIDER_ALIASES,
    TOKEN_FIELDS,
    TRUE_STRINGS,
    UNSET_OPERATIONS,
)

log = logging.getLogger(__name__)

Parser = Callable[[Any, str, list[str]], Any]

MAX_LONG = 2**63 - 1
MAX_TEXT_CHARS = 256
MAX_FINISH_REASONS = 64
# OTel and OpenLIT report seconds; no first token takes five minutes, while
# a millisecond figure passes 300 after a third of a second.
TTFT_MAX_SECONDS = 300.0
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
            parser = _SOURCE_PARSERS.get(name, parse)
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


def _fit_long(value: int | None, field: str, issues: list[str]) -> int | None:
    """A sum beyond Avro's long cannot be a real count: dropped, not wrapped."""
    if value is None or value <= MAX_LONG:
        return value
    _add_issue(issues, f"invalid_tokens:{field}")
    return None


def _add_issue(issues: list[str], issue: str) -> None:
    if issue not in issues:
        issues.append(issue)


def _tokens(value: Any, field: str, issues: list[str]) -> int | None:
    """A token count; strings are parsed, negatives and garbage rejected."""
    if type(value) is int:
        if 0 <= value <= MAX_LONG:
            return value
    elif type(value) is float:
        if value.is_integer() and 0 <= value <= MAX_LONG:
            return int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        parsed = _parse_int(text)
        if parsed is not None and 0 <= parsed <= MAX_LONG:
            _add_issue(issues, "tokens_as_string")
            return parsed
    _add_issue(issues, f"invalid_tokens:{field}")
    return None


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if not number.is_integer():
        return None
    return int(number)


def _number(value: Any, field: str, issues: list[str]) -> float | None:
    """A finite, non-negative float from a number or a numeric string."""
    number: float | None = None
    if type(value) is int or type(value) is float:
        number = float(value) if abs(value) <= 1e300 else None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            number = None
        else:
            _add_issue(issues, f"number_as_string:{field}")
    if number is None or not math.isfinite(number) or number < 0:
        _add_issue(issues, f"invalid_value:{field}")
        return None
    return number


def _ttft(value: Any, field: str, issues: list[str]) -> float | None:
    seconds = _number(value, field, issues)
    if seconds is not None and seconds > TTFT_MAX_SECONDS:
        _add_issue(issues, "ttft_assumed_ms")
        return seconds / 1000.0
    return seconds


def _text(value: Any, field: str, issues: list[str]) -> str | None:
    """A trimmed, bounded, UTF-8-safe string; numbers are accepted as text."""
    if isinstance(value, str):
        text = value.strip()
    elif type(value) is int or type(value) is float:
        text = str(value)
    elif isinstance(value, bytes):
        text = value.decode("utf-8", "replace").strip()
    else:
        _add_issue(issues, f"invalid_value:{field}")
        return None
    if not text:
        return None
    if len(text) > MAX_TEXT_CHARS:
        _add_issue(issues, f"value_truncated:{field}")
        text = text[:MAX_TEXT_CHARS]
    if not text.isascii():
        # Lone surrogates cannot be written as Avro (UTF-8) strings.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _provider(value: Any, field: str, issues: list[str]) -> str | None:
    text = _text(value, field, issues)
    if text is None:
        return None
    canonical = _canonical_provider(text)
    if canonical != text:
        _add_issue(issues, "provider_normalized")
    return canonical


@lru_cache(maxsize=1024)
def _canonical_provider(text: str) -> str:
    lowered = text.lower()
    squashed = (
        lowered.replace(".", "").replace("_", "").replace("-", "").replace(" ", "")
    )
    return PROVIDER_ALIASES.get(squashed, lowered)


def _operation(value: Any, field: str, issues: list[str]) -> str | None:
    text = _text(value, field, issues)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in UNSET_OPERATIONS:
        return None
    return OPERATION_ALIASES.get(lowered, lowered)


def _otel_operation(value: Any, field: str, issues: list[str]) -> str | None:
    """gen_ai.operation.name: a spelling other than the canonical one is noted."""
    operation = _operation(value, field, issues)
    if operation is not None and operation != value:
        _add_issue(issues, "operation_normalized")
    return operation


def _operation_from_span_name(span_name: str, issues: list[str]) -> str | None:
    """OTel inference spans are named "{operation} {model}"."""
    if not isinstance(span_name, str):
        return None
    head = span_name.partition(" ")[0]
    if head not in OPERATIONS:
        return None
    _add_issue(issues, "operation_from_span_name")
    return head


def _finish_reasons(
    value: Any, field: str, issues: list[str], *, array: bool = True
) -> list[str] | None:
    """A list of reasons from an array, a single string or a JSON array string.

    A string is a quirk only where the attribute is an array; OpenLLMetry's
    singular ``finish_reason`` attributes hold one string by design.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        quirk = "finish_reasons_as_string"
        try:
            value = orjson.loads(text) if text.startswith("[") else [text]
            quirk = "finish_reasons_as_json" if text.startswith("[") else quirk
        except orjson.JSONDecodeError:
            value = [text]
        if array:
            _add_issue(issues, quirk)
    if not isinstance(value, list | tuple):
        _add_issue(issues, f"invalid_value:{field}")
        return None

    reasons = []
    for item in value[:MAX_FINISH_REASONS]:
        if isinstance(item, bool) or item is None:
            continue
        reason = _text(item, field, issues)
        if reason is not None:
            reasons.append(reason)
    return reasons or None


def _bool(value: Any, field: str, issues: list[str]) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if not lowered:
            return None
        if lowered in TRUE_STRINGS or lowered in FALSE_STRINGS:
            _add_issue(issues, f"bool_as_string:{field}")
            return lowered in TRUE_STRINGS
    elif type(value) is int and value in (0, 1):
        return value == 1
    _add_issue(issues, f"invalid_value:{field}")
    return None


def _stream_from_invocation_parameters(
    value: Any, field: str, issues: list[str]
) -> bool | None:
    """OpenInference keeps request parameters as JSON: {"stream": true, ...}."""
    if isinstance(value, str):
        if '"stream"' not in value:
            return None
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(value, dict):
        return None
    stream = value.get("stream")
    if stream is None:
        return None
    return _bool(stream, field, issues)


def _finish_reason_single(value: Any, field: str, issues: list[str]) -> Any:
    return _finish_reasons(value, field, issues, array=False)


# Attributes whose values need a parser other than their field's.
_SOURCE_PARSERS: dict[str, Parser] = {
    "gen_ai.operation.name": _otel_operation,
    "gen_ai.response.finish_reason": _finish_reason_single,
    "llm.response.finish_reason": _finish_reason_single,
    "llm.response.stop_reason": _finish_reason_single,
    "llm.invocation_parameters": _stream_from_invocation_parameters,
}
