"""Model name resolution: wrappers stripped, dated names fall back last."""

from __future__ import annotations

import pytest

from streams.cost.models import candidates, prefix_provider


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("GPT-4o", ["gpt-4o"]),
        ("gpt-4o-2024-08-06", ["gpt-4o-2024-08-06", "gpt-4o"]),
        ("openai/gpt-4o", ["openai/gpt-4o", "gpt-4o"]),
        (
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            [
                "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
                "claude-3-5-sonnet-20240620",
                "anthropic.claude-3-5-sonnet-20240620",
                "claude-3-5-sonnet",
            ],
        ),
        (
            "projects/p/locations/l/publishers/google/models/gemini-1.5-pro-002",
            ["gemini-1.5-pro-002", "gemini-1.5-pro"],
        ),
        ("models/gemini-2.0-flash", ["gemini-2.0-flash"]),
        ("mistral-large-2407", ["mistral-large-2407", "mistral-large"]),
        (
            "claude-3-5-sonnet-v2@20241022",
            ["claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-v2"],
        ),
        # a three-digit suffix is a version only for Gemini
        ("qwen-2.5-72b-instruct-128", ["qwen-2.5-72b-instruct-128"]),
    ],
)
def test_candidates_most_specific_first(name: str, expected: list[str]) -> None:
    assert [n for n, _ in candidates(name)] == expected


def test_each_candidate_says_how_it_was_made() -> None:
    hows = dict(candidates("openai/gpt-4o-2024-08-06"))

    assert hows["openai/gpt-4o-2024-08-06"] == "exact"
    assert hows["gpt-4o-2024-08-06"] == "stripped prefix openai/"
    assert hows["gpt-4o"] == "dated -> family gpt-4o"


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("anthropic/claude-3-5-haiku", "anthropic"),
        ("eu.anthropic.claude-3-haiku-20240307-v1:0", "aws.bedrock"),
        (
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.meta.llama3-1-8b-v1:0",
            "aws.bedrock",
        ),
        ("projects/p/locations/l/publishers/google/models/gemini-1.5-pro", None),
        ("gpt-4o", None),
    ],
)
def test_prefix_provider(name: str, provider: str | None) -> None:
    assert prefix_provider(name) == provider
