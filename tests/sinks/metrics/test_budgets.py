"""Budget rules are validated at start, with errors that name the rule."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from llmobs.errors import ConfigError
from sinks.metrics.budgets import load_budgets


def budgets_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    return str(path)


def test_a_valid_file_is_read(tmp_path: Path) -> None:
    path = budgets_file(
        tmp_path,
        "budgets:\n"
        "  - {name: acme-daily, tenant: acme, limit: 0.1}\n"
        "  - {name: gpt, model: openai/gpt-4o, period: month, limit: 500}\n",
    )

    acme, gpt = load_budgets(path)

    assert (acme.tenant, acme.limit, acme.period) == ("acme", Decimal("0.1"), "day")
    assert (gpt.model, gpt.period) == ("openai/gpt-4o", "month")


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("{name: b, tenant: acme, limit: abc}", "limit must be a positive number"),
        ("{name: b, tenant: acme}", "limit is required"),
        ("{name: b, model: gpt-4o, limit: 1}", "model must be provider/model"),
        ("{name: b, model: openai/, limit: 1}", "model must be provider/model"),
        ("{name: 'a:b', tenant: acme, limit: 1}", "must not hold ':'"),
        ("{name: b, tenant: acme, limit: 1, from: 2025-13-45}", "month must be in"),
    ],
)
def test_a_mistake_names_the_rule(tmp_path: Path, rule: str, error: str) -> None:
    path = budgets_file(tmp_path, f"budgets:\n  - {rule}\n")

    with pytest.raises(ConfigError, match=error) as raised:
        load_budgets(path)

    assert str(path) in str(raised.value)
