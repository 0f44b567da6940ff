"""The Grafana dashboard and the Prometheus alert rules in deploy/ parse, and every metric they
query is one that Wayport exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from wayport.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "wayport-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DOCS = ROOT / "docs" / "metrics.md"
METRIC = re.compile(r"\bwayport_[a-z0-9_]+\b")


def exposed() -> set[str]:
    return Metrics().names()


def names_in(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def test_the_exposed_names_include_counter_and_histogram_series() -> None:
    names = exposed()
    assert "wayport_http_requests_total" in names
    assert "wayport_http_request_duration_seconds_bucket" in names
    assert "wayport_agent_escalations_total" in names
    assert "wayport_no_such_metric" not in names


def test_every_dashboard_query_uses_existing_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) >= 15
    used = set().union(*map(names_in, exprs))
    assert used - exposed() == set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    for must in ("completion", "escalation", "Cost per task", "p95", "Tokens"):
        assert must.lower() in titles.lower(), must


def test_every_alert_rule_is_complete_and_uses_existing_metrics() -> None:
    rules = [r for group in yaml.safe_load(ALERTS.read_text())["groups"] for r in group["rules"]]
    assert len(rules) >= 8
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert names_in(rule["expr"]) - exposed() == set(), rule["alert"]


def test_the_catalogue_documents_every_metric() -> None:
    text = DOCS.read_text()
    families = {f.name for f in Metrics().registry.collect()}
    counters = {f.name for f in Metrics().registry.collect() if f.type == "counter"}
    for name in families:
        shown = f"{name}_total" if name in counters else name
        assert f"`{shown}`" in text, name
