"""Parsers from raw attribute values to normalized GenAI field values.

Each parser takes ``(value, field, issues)``, returns the parsed value or None,
and names every correction or rejected value in ``issues``; none raises.
``streams.normalize`` decides which attribute feeds which field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from streams.conventions import (
    FALSE_STRINGS,
    OPERATION_ALIASES,
    OPERATIONS,
    PROVIDER_ALIASES,
    TRUE_STRINGS,
    UNSET_OPERATIONS,
)

Parser = Callable[[Any, str, list[str]], Any]

MAX_LONG = 2**63 - 1
# No model call reads or writes a trillion tokens; a count past it is a bug
# in the sender, and summing such counts would overflow downstream counters.
MAX_TOKENS = 10**12
MAX_TEXT_CHARS = 256
MAX_FINISH_REASONS = 64
# OTel and OpenLIT report seconds; no first token takes five minutes, while
# a millisecond figure passes 300 after a third of a second.
TTFT_MAX_SECONDS = 300.0


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
        if 0 <= value <= MAX_TOKENS:
            return value
    elif type(value) is float:
        if value.is_integer() and 0 <= value <= MAX_TOKENS:
            return int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        parsed = _parse_int(text)
        if parsed is not None and 0 <= parsed <= MAX_TOKENS:
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
    canonical = canonical_provider(text)
    if canonical != text:
        _add_issue(issues, "provider_normalized")
    return canonical


@lru_cache(maxsize=1024)
def canonical_provider(text: str) -> str:
    """The OTel well-known name of a provider spelling, else it lowercased."""
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
SOURCE_PARSERS: dict[str, Parser] = {
    "gen_ai.operation.name": _otel_operation,
    "gen_ai.response.finish_reason": _finish_reason_single,
    "llm.response.finish_reason": _finish_reason_single,
    "llm.response.stop_reason": _finish_reason_single,
    "llm.invocation_parameters": _stream_from_invocation_parameters,
}
