"""The policy file: every type parses, and errors name the policy and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmobs.errors import ConfigError
from streams.sampling import config
from streams.sampling import policies as p
from streams.sampling.settings import DEFAULT_POLICIES

REPO = Path(__file__).resolve().parents[3]


def test_the_shipped_policy_file_is_valid() -> None:
    policies = config.load(DEFAULT_POLICIES)

    assert "errors" in policies.names
    assert len(policies.drop) == 1


def test_every_type_parses() -> None:
    text = """
policies:
  - {name: a, type: always_sample}
  - {name: b, type: latency, threshold_ms: 100, upper_threshold_ms: 200}
  - {name: c, type: status_code, status_codes: [STATUS_CODE_ERROR, ok]}
  - {name: d, type: numeric_attribute, key: n, min_value: 1}
  - name: e
    type: string_attribute
    key: s
    values: ["^a"]
    enabled_regex_matching: true
  - {name: f, type: boolean_attribute, key: b, value: false}
  - {name: g, type: probabilistic, sampling_percentage: 12.5}
  - {name: h, type: rate_limiting, spans_per_second: 50}
  - {name: i, type: span_count, min_spans: 2, max_spans: 9}
  - {name: j, type: and, policies: [{name: j1, type: model_error}]}
  - {name: k, type: not, policy: {name: k1, type: unpriced_model}}
  - {name: l, type: drop, policies: [{name: l1, type: provider, providers: [x]}]}
  - name: m
    type: composite
    max_total_spans_per_second: 100
    policies:
      - {name: m1, type: model, models: [gpt-4o], rate_percent: 60}
      - {name: m2, type: tokens, min_tokens: 10, kind: input, rate_percent: 40}
  - {name: n, type: cost, min_cost: 0.25}
"""
    policies = config.parse(yaml.safe_load(text))

    assert [type(x) for x in policies.drop] == [p.Drop]
    assert len(policies.stateless) + len(policies.stateful) == 13
    assert {x.name for x in policies.stateful} == {"h", "m"}


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"name": "x", "type": "latency"}, "#1 'x' key threshold_ms: is required"),
        ({"name": "x", "type": "latency", "threshold_ms": -1}, "key threshold_ms"),
        ({"name": "x", "type": "nope"}, "#1 'x' key type: unknown type 'nope'"),
        ({"type": "always_sample"}, "#1 key name"),
        ({"name": "x", "type": "latency", "threshold": 1}, "key threshold: unknown"),
        ({"name": "x", "type": "status_code", "status_codes": ["BAD"]}, "BAD"),
        (
            {"name": "x", "type": "probabilistic", "sampling_percentage": 101},
            "key sampling_percentage: must be at most 100",
        ),
        (
            {
                "name": "x",
                "type": "string_attribute",
                "key": "k",
                "values": ["("],
                "enabled_regex_matching": True,
            },
            "key values: bad regular expression",
        ),
        (
            {
                "name": "x",
                "type": "not",
                "policy": {
                    "name": "y",
                    "type": "probabilistic",
                    "sampling_percentage": 5,
                },
            },
            "key policy: must be deterministic",
        ),
        (
            {"name": "x", "type": "and", "policies": [{"name": "y", "type": "cost"}]},
            "#1 'x' > #1 'y' key min_cost",
        ),
        (
            {
                "name": "x",
                "type": "composite",
                "max_total_spans_per_second": 10,
                "policies": [{"name": "y", "type": "always_sample"}],
            },
            "'x' > #1 key rate_percent: is required",
        ),
        ({"name": "x", "type": "cost", "min_cost": "a lot"}, "key min_cost"),
        ({"name": "x", "type": "tokens", "min_tokens": 5, "kind": "all"}, "key kind"),
    ],
)
def test_errors_name_the_policy_and_the_key(policy: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="sampling policy") as caught:
        config.parse({"policies": [policy, {"name": "keep", "type": "always_sample"}]})

    assert message in str(caught.value)


DROP = {"name": "d", "type": "drop", "policies": [{"name": "a", "type": "cost"}]}


@pytest.mark.parametrize(
    "parent",
    [
        {"name": "x", "type": "and", "policies": [DROP]},
        {"name": "x", "type": "not", "policy": DROP},
        {"name": "x", "type": "drop", "policies": [DROP]},
        {
            "name": "x",
            "type": "composite",
            "max_total_spans_per_second": 10,
            "policies": [{**DROP, "rate_percent": 50}],
        },
    ],
)
def test_a_drop_nested_in_another_policy_is_refused(parent: dict) -> None:
    keep = {"name": "keep", "type": "always_sample"}

    with pytest.raises(ConfigError, match="'d' key type: a drop policy only drops"):
        config.parse({"policies": [parent, keep]})


def test_zero_upper_bounds_mean_no_bound_as_in_the_collector() -> None:
    text = """
policies:
  - {name: slow, type: latency, threshold_ms: 500, upper_threshold_ms: 0}
  - {name: many, type: span_count, min_spans: 3, max_spans: 0}
"""
    slow, many = config.parse(yaml.safe_load(text)).stateless

    assert isinstance(slow, p.Latency) and slow.upper_ms is None
    assert isinstance(many, p.SpanCount) and many.max_spans is None


def test_duplicate_names_and_drop_only_files_are_refused() -> None:
    twice = [{"name": "a", "type": "always_sample"}] * 2
    only_drop = [{"name": "d", "type": "drop", "policies": [twice[0]]}]

    with pytest.raises(ConfigError, match="'a' used twice"):
        config.parse({"policies": twice})
    with pytest.raises(ConfigError, match="no keep policy"):
        config.parse({"policies": only_drop})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: [")

    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        config.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="'policies' list"):
        config.parse({"rules": []})


def test_the_readme_example_is_valid() -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Tail sampling") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", 10)]

    policies = config.parse(yaml.safe_load(example))

    assert "unpriced" in policies.names


def test_an_and_with_two_budgets_is_refused() -> None:
    budget = {"type": "rate_limiting", "spans_per_second": 10}
    both = {
        "name": "two",
        "type": "and",
        "policies": [{**budget, "name": "a"}, {**budget, "name": "b"}],
    }

    with pytest.raises(ConfigError, match="'two' key policies: may hold one"):
        config.parse({"policies": [both]})


def rate_limited_share(salt: str | None) -> dict:
    share = {"name": "some", "type": "probabilistic", "sampling_percentage": 5}
    if salt is not None:
        share["hash_salt"] = salt
    return {
        "name": "limited",
        "type": "and",
        "policies": [
            share,
            {"name": "r", "type": "rate_limiting", "spans_per_second": 9},
        ],
    }


@pytest.mark.parametrize(("inner", "outer"), [(None, None), ("s1", "s1")])
def test_a_salt_shared_with_a_rate_limited_probabilistic_is_refused(
    inner: str | None, outer: str | None
) -> None:
    top = {"name": "tenth", "type": "probabilistic", "sampling_percentage": 10}
    if outer is not None:
        top["hash_salt"] = outer

    with pytest.raises(ConfigError, match=r"'some' key hash_salt: .* used by 'tenth'"):
        config.parse({"policies": [top, rate_limited_share(inner)]})


def test_a_rate_limited_probabilistic_with_its_own_salt_is_taken() -> None:
    top = {"name": "tenth", "type": "probabilistic", "sampling_percentage": 10}

    policies = config.parse({"policies": [top, rate_limited_share("own")]})

    assert policies.names == ["tenth", "limited"]
