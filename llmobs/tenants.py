"""What a tenant name may be, and where a span's tenant comes from.

A tenant names rows, Redis keys, archive folders and Tempo's
``X-Scope-OrgID`` header, so it follows Tempo's rule for tenant ids: 1 to
150 of the characters below, and neither ``.`` nor ``..``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DEFAULT_TENANT = "default"
# The resource attribute that names the tenant when no Kafka header does.
TENANT_ATTRIBUTE = "tenant.id"
INVALID_TENANT = "invalid_tenant"
MAX_TENANT_CHARS = 150

_ALLOWED = re.compile(r"[A-Za-z0-9!._*'()-]+")
# How much of a bad name an error message repeats.
_SHOWN_CHARS = 40


def tenant_problem(tenant: str) -> str | None:
    """Why ``tenant`` cannot name a tenant, or None when it can."""
    shown = tenant[:_SHOWN_CHARS] + ("..." if len(tenant) > _SHOWN_CHARS else "")
    if len(tenant) > MAX_TENANT_CHARS:
        return f"tenant {shown!r} is longer than {MAX_TENANT_CHARS} characters"
    if not _ALLOWED.fullmatch(tenant) or tenant in (".", ".."):
        return (
            f"tenant {shown!r} may hold only letters, digits and !-_.*'() "
            "and may not be . or .."
        )
    return None


def resource_tenant(resource_attributes: Mapping[str, Any]) -> str:
    """The tenant a resource names by attribute, else the default tenant."""
    value = resource_attributes.get(TENANT_ATTRIBUTE)
    return str(value) if value else DEFAULT_TENANT
