"""Tenant names: what may name a tenant, and where a resource's comes from."""

from __future__ import annotations

import pytest

from llmobs.tenants import DEFAULT_TENANT, resource_tenant, tenant_problem


@pytest.mark.parametrize(
    "tenant", ["acme", "team-a_1", "a.b", "Acme(EU)", "x*!'", "7", "a" * 150]
)
def test_tempo_compatible_names_are_tenants(tenant: str) -> None:
    assert tenant_problem(tenant) is None


@pytest.mark.parametrize(
    ("tenant", "says"),
    [
        ("", "may hold only"),
        (".", "may not be . or .."),
        ("..", "may not be . or .."),
        ("team a", "may hold only"),
        ("acme\r\nX-Scope-OrgID: other", "may hold only"),
        ("a/b", "may hold only"),
        ("a|b", "may hold only"),
        ("zürich", "may hold only"),
        ("a" * 151, "longer than 150"),
    ],
)
def test_names_that_break_headers_keys_or_paths_are_refused(
    tenant: str, says: str
) -> None:
    problem = tenant_problem(tenant)

    assert problem is not None
    assert says in problem


def test_a_refusal_repeats_only_the_start_of_a_long_name() -> None:
    problem = tenant_problem("x" * 10_000)

    assert problem is not None
    assert len(problem) < 200


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"tenant.id": "acme"}, "acme"),
        ({"tenant.id": 42}, "42"),
        ({"tenant.id": ""}, DEFAULT_TENANT),
        ({"service.name": "x"}, DEFAULT_TENANT),
    ],
)
def test_resource_tenant(attributes: dict[str, object], expected: str) -> None:
    assert resource_tenant(attributes) == expected
