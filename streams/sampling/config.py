"""The policy file: YAML parsed and validated into a ``PolicySet`` at start.

Every error names the policy (its position and name) and the bad key, e.g.
``sampling policy #3 'slow' key threshold_ms: must be a number >= 0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from llmobs.errors import ConfigError
from streams.sampling import llm_policies as llm
from streams.sampling import policies as p
from streams.sampling.combine import PolicySet

_COMMON = {"name", "type"}


class _Spec:
    """One policy's mapping, with typed getters that raise naming the key."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"sampling policy {where}: must be a mapping")
        self.raw = raw
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"sampling policy {where} key name: a name is required")
        self.name = name
        self.where = f"{where} '{name}'"
        self.type = raw.get("type")

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"sampling policy {self.where} key {key}: {problem}")

    def check_keys(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.raw) - allowed - _COMMON)
        if unknown:
            raise self.fail(unknown[0], f"unknown key for type {self.type}")

    def number(
        self, key: str, default: float | None = None, minimum: float = 0.0
    ) -> float | None:
        value = self.raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number >= {minimum:g}")
        if value < minimum:
            raise self.fail(key, f"must be a number >= {minimum:g}")
        return float(value)

    def required_number(self, key: str, minimum: float = 0.0) -> float:
        value = self.number(key, minimum=minimum)
        if value is None:
            raise self.fail(key, "is required")
        return value

    def string(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def strings(self, key: str) -> list[str]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(key, "must be a non-empty list of strings")
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a non-empty list of strings")
        return value

    def patterns(self, key: str, regex: bool) -> list[str]:
        values = self.strings(key)
        if regex:
            for value in values:
                try:
                    re.compile(value)
                except re.error as exc:
                    problem = f"bad regular expression {value!r}: {exc}"
                    raise self.fail(key, problem) from None
        return values

    def sub_policies(self, key: str) -> list[Any]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(key, "must be a non-empty list of policies")
        return value


def _always(s: _Spec) -> p.Policy:
    s.check_keys(set())
    return p.AlwaysSample(s.name)


def _latency(s: _Spec) -> p.Policy:
    s.check_keys({"threshold_ms", "upper_threshold_ms"})
    threshold_ms = s.required_number("threshold_ms")
    # 0, the Collector's default, means no upper bound.
    upper_ms = s.number("upper_threshold_ms") or None
    if upper_ms is not None and upper_ms < threshold_ms:
        raise s.fail("upper_threshold_ms", "must not be below threshold_ms")
    return p.Latency(s.name, threshold_ms, upper_ms)


def _status_code(s: _Spec) -> p.Policy:
    s.check_keys({"status_codes"})
    codes = [c.upper().removeprefix("STATUS_CODE_") for c in s.strings("status_codes")]
    bad = [c for c in codes if c not in p.STATUS_CODES]
    if bad:
        raise s.fail("status_codes", f"{bad[0]} is not one of OK, ERROR, UNSET")
    return p.StatusCode(s.name, codes)


def _numeric(s: _Spec) -> p.Policy:
    s.check_keys({"key", "min_value", "max_value", "invert_match"})
    low = s.number("min_value", minimum=-float("inf"))
    high = s.number("max_value", minimum=-float("inf"))
    if low is None and high is None:
        raise s.fail("min_value", "min_value or max_value is required")
    if low is not None and high is not None and high < low:
        raise s.fail("max_value", "must not be below min_value")
    invert = s.flag("invert_match")
    return p.NumericAttribute(s.name, s.string("key"), low, high, invert)


def _string(s: _Spec) -> p.Policy:
    s.check_keys({"key", "values", "enabled_regex_matching", "invert_match"})
    regex = s.flag("enabled_regex_matching")
    return p.StringAttribute(
        s.name,
        s.string("key"),
        s.patterns("values", regex),
        regex,
        s.flag("invert_match"),
    )


def _boolean(s: _Spec) -> p.Policy:
    s.check_keys({"key", "value", "invert_match"})
    if "value" not in s.raw:
        raise s.fail("value", "is required")
    return p.BooleanAttribute(
        s.name, s.string("key"), s.flag("value"), s.flag("invert_match")
    )


def _probabilistic(s: _Spec) -> p.Policy:
    s.check_keys({"sampling_percentage", "hash_salt"})
    percentage = s.required_number("sampling_percentage")
    if percentage > 100:
        raise s.fail("sampling_percentage", "must be at most 100")
    salt = s.raw.get("hash_salt", "")
    if not isinstance(salt, str):
        raise s.fail("hash_salt", "must be a string")
    return p.Probabilistic(s.name, percentage, salt)


def _rate_limiting(s: _Spec) -> p.Policy:
    s.check_keys({"spans_per_second", "burst_spans"})
    rate = s.required_number("spans_per_second", minimum=1)
    burst = s.number("burst_spans", default=rate, minimum=1)
    return p.RateLimiting(s.name, rate, burst or rate)


def _span_count(s: _Spec) -> p.Policy:
    s.check_keys({"min_spans", "max_spans"})
    low = int(s.required_number("min_spans"))
    # 0, the Collector's default, means no limit.
    high = s.number("max_spans") or None
    if high is not None and high < low:
        raise s.fail("max_spans", "must not be below min_spans")
    return p.SpanCount(s.name, low, None if high is None else int(high))


def _cost(s: _Spec) -> p.Policy:
    s.check_keys({"min_cost"})
    raw = s.raw.get("min_cost")
    try:
        if isinstance(raw, bool) or raw is None:
            raise InvalidOperation
        min_cost = Decimal(str(raw))
    except InvalidOperation:
        raise s.fail("min_cost", "must be a number (currency units)") from None
    if not min_cost.is_finite() or min_cost < 0:
        raise s.fail("min_cost", "must be a number >= 0")
    return llm.Cost(s.name, min_cost)


def _tokens(s: _Spec) -> p.Policy:
    s.check_keys({"min_tokens", "kind"})
    kind = s.string("kind", "total")
    if kind not in llm.TOKEN_KINDS:
        raise s.fail("kind", f"must be one of {', '.join(llm.TOKEN_KINDS)}")
    return llm.Tokens(s.name, int(s.required_number("min_tokens")), kind)


def _model(s: _Spec) -> p.Policy:
    s.check_keys({"models", "regex"})
    regex = s.flag("regex")
    return llm.Model(s.name, s.patterns("models", regex), regex)


def _provider(s: _Spec) -> p.Policy:
    s.check_keys({"providers"})
    return llm.Provider(s.name, s.strings("providers"))


def _model_error(s: _Spec) -> p.Policy:
    s.check_keys(set())
    return llm.ModelError(s.name)


def _unpriced(s: _Spec) -> p.Policy:
    s.check_keys(set())
    return llm.UnpricedModel(s.name)


def _and(s: _Spec) -> p.Policy:
    s.check_keys({"policies"})
    children = _children(s, "policies")
    if sum(c.stateful for c in children) > 1:
        # The first would spend its budget on traces the second refuses.
        raise s.fail(
            "policies", "may hold one rate_limiting or composite sub-policy at most"
        )
    return p.And(s.name, children)


def _not(s: _Spec) -> p.Policy:
    s.check_keys({"policy"})
    child = _build(s.raw.get("policy"), f"{s.where} > policy", nested=True)
    if child.stateful or _is_probabilistic(child):
        raise s.fail("policy", "must be deterministic (no rate or probability)")
    return p.Not(s.name, child)


def _drop(s: _Spec) -> p.Policy:
    s.check_keys({"policies"})
    children = _children(s, "policies")
    if any(c.stateful for c in children):
        raise s.fail("policies", "a drop policy cannot contain rate limits")
    return p.Drop(s.name, children)


def _composite(s: _Spec) -> p.Policy:
    s.check_keys({"max_total_spans_per_second", "policies"})
    total = s.required_number("max_total_spans_per_second", minimum=1)
    shares = []
    for index, raw in enumerate(s.sub_policies("policies"), start=1):
        where = f"{s.where} > #{index}"
        if not isinstance(raw, dict) or "rate_percent" not in raw:
            raise ConfigError(f"sampling policy {where} key rate_percent: is required")
        percent = raw["rate_percent"]
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise ConfigError(f"sampling policy {where} key rate_percent: not a number")
        spec = {k: v for k, v in raw.items() if k != "rate_percent"}
        child = _build(spec, where, nested=True)
        shares.append((child, float(percent)))
    if sum(percent for _, percent in shares) > 100:
        raise s.fail("policies", "rate_percent values add up to more than 100")
    return p.Composite(s.name, total, shares)


def _children(s: _Spec, key: str) -> list[p.Policy]:
    return [
        _build(raw, f"{s.where} > #{index}", nested=True)
        for index, raw in enumerate(s.sub_policies(key), start=1)
    ]


def _is_probabilistic(policy: p.Policy) -> bool:
    if isinstance(policy, p.Probabilistic):
        return True
    return isinstance(policy, p.And) and any(
        _is_probabilistic(c) for c in policy.policies
    )


BUILDERS: dict[str, Callable[[_Spec], p.Policy]] = {
    "always_sample": _always,
    "latency": _latency,
    "status_code": _status_code,
    "numeric_attribute": _numeric,
    "string_attribute": _string,
    "boolean_attribute": _boolean,
    "probabilistic": _probabilistic,
    "rate_limiting": _rate_limiting,
    "span_count": _span_count,
    "and": _and,
    "not": _not,
    "drop": _drop,
    "composite": _composite,
    "cost": _cost,
    "tokens": _tokens,
    "model": _model,
    "provider": _provider,
    "model_error": _model_error,
    "unpriced_model": _unpriced,
}


def _build(raw: Any, where: str, nested: bool = False) -> p.Policy:
    spec = _Spec(raw, where)
    builder = BUILDERS.get(spec.type) if isinstance(spec.type, str) else None
    if builder is None:
        raise spec.fail("type", f"unknown type {spec.type!r}")
    if nested and builder is _drop:
        raise spec.fail(
            "type",
            "a drop policy only drops at the top level of the file; inside"
            " and, not, composite or drop it would never drop",
        )
    return builder(spec)


def parse(data: Any, source: str = "policies") -> PolicySet:
    """Build the policy set from the parsed YAML document ``data``."""
    if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'policies' list")
    unknown = sorted(set(data) - {"policies"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {unknown[0]}")
    keep: list[p.Policy] = []
    drop: list[p.Drop] = []
    names: set[str] = set()
    for index, raw in enumerate(data["policies"], start=1):
        policy = _build(raw, f"#{index}")
        if policy.name in names:
            where = f"sampling policy #{index} key name"
            raise ConfigError(f"{where}: {policy.name!r} used twice")
        names.add(policy.name)
        if isinstance(policy, p.Drop):
            drop.append(policy)
        else:
            keep.append(policy)
    if not keep:
        raise ConfigError(f"{source}: no keep policy, every trace would be dropped")
    _check_budget_salts([*keep, *drop])
    return PolicySet(keep, drop)


def _check_budget_salts(policies: list[p.Policy]) -> None:
    """Refuse a hash salt shared by a probabilistic policy under a rate limit.

    The adjusted count takes a budget's admissions as independent of every
    other hash condition, which holds only for a salt no other policy uses.
    """
    users: dict[bytes, list[tuple[str, bool]]] = {}
    for top in policies:
        for policy, budgeted in _probabilistic_parts(top, top.stateful):
            users.setdefault(policy.salt, []).append((policy.name, budgeted))
    for salt, named in users.items():
        limited = [name for name, under_budget in named if under_budget]
        if limited and len(named) > 1:
            others = ", ".join(repr(n) for n, _ in named if n != limited[0])
            raise ConfigError(
                f"sampling policy {limited[0]!r} key hash_salt: under a rate"
                f" limit it needs a salt of its own, {salt.decode()!r} is also"
                f" used by {others}"
            )


def _probabilistic_parts(
    policy: p.Policy, budgeted: bool
) -> list[tuple[p.Probabilistic, bool]]:
    """The probabilistic policies within ``policy``, and whether a budget
    rules over each."""
    if isinstance(policy, p.Probabilistic):
        return [(policy, budgeted)]
    if isinstance(policy, p.Composite):
        children = [child for child, _ in policy.shares]
        budgeted = True
    elif isinstance(policy, p.And | p.Drop):
        children = policy.policies
        budgeted = budgeted or policy.stateful
    elif isinstance(policy, p.Not):
        children = [policy.policy]
    else:
        return []
    return [part for c in children for part in _probabilistic_parts(c, budgeted)]


def load(path: str | Path) -> PolicySet:
    """Read and validate the policy file at ``path``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"sampling policy file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:
        problem = f"sampling policy file {path} is not valid YAML: {exc}"
        raise ConfigError(problem) from exc
    return parse(data, f"sampling policy file {path}")
