"""The Grafana dashboard's queries run on our schema and show our data.

Grafana itself does not run here; its macros are few and simple, so the test
expands them as Grafana's PostgreSQL data source does and runs each panel's
SQL on the real database, migrated, after the metrics store wrote a tenant's
minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from sinks.metrics.store import MetricsStore
from streams.metrics.window import PartitionWindows
from tests.streams.metrics.spans import batch, span

GRAFANA = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "llm-observatory.json"
# Panels that read span rows of conversations, which this test writes none of.
SPAN_ROW_PANELS = {"Top conversations by cost"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["rawSql"])
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def expand(
    sql: str, since: dt.datetime, until: dt.datetime, tenants: list[str]
) -> tuple[str, list[Any]]:
    """Grafana's macros and variable as bind parameters, and their values."""
    args: list[Any] = []

    def bind(*values: Any) -> list[str]:
        args.extend(values)
        return [f"${len(args) - len(values) + i + 1}" for i in range(len(values))]

    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: "{} BETWEEN {} AND {}".format(m.group(1), *bind(since, until)),
        sql,
    )
    sql = sql.replace("IN ($tenant)", "= ANY({}::text[])".format(*bind(tenants)))
    assert "$__" not in sql and "$tenant" not in sql, f"unexpanded macro in {sql}"
    return sql, args


def test_every_query_uses_the_provisioned_data_source() -> None:
    provisioned = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    data = dashboard()
    used = [panel["datasource"]["uid"] for panel in data["panels"]]
    used += [t["datasource"]["uid"] for p in data["panels"] for t in p["targets"]]
    used += [v["datasource"]["uid"] for v in data["templating"]["list"]]

    assert set(used) <= uids


@pytest.mark.integration
async def test_every_panel_query_runs_and_shows_the_tenants_minutes(
    db: asyncpg.Connection,
) -> None:
    tenant = f"grafana-{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    # Minutes ago, but today (UTC), for the panel of today's cost.
    midnight = dt.datetime.now(dt.UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    end_ns = max(time.time_ns() - 5 * 60 * 10**9, int(midnight.timestamp()) * 10**9)
    windows = PartitionWindows("llm.spans[0]", 60, grace_s=0)
    windows.apply(0, batch(tenant, [span(rng, end_ns) for _ in range(20)]))
    windows.close(now_ms=end_ns // 10**6 + 10 * 60_000)
    store = MetricsStore(db)
    await store.prepare()
    assert await store.add(windows.outbox)
    now = dt.datetime.now(dt.UTC)
    # A range that starts yesterday, so that today's day bucket is inside it.
    since = now - dt.timedelta(days=1)
    until = now + dt.timedelta(hours=1)

    variable = dashboard()["templating"]["list"][0]["query"]
    tenants = [row[0] for row in await db.fetch(variable)]
    assert tenant in tenants

    for title, sql in panel_queries():
        query, args = expand(sql, since, until, [tenant])
        rows = await db.fetch(query, *args)
        if title in SPAN_ROW_PANELS:
            continue
        assert rows, f"panel {title!r} shows nothing"
        assert any(v is not None for v in rows[0].values()), f"panel {title!r}"
