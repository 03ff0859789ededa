"""docs/prometheus and docs/grafana use only metrics the runtime serves, the alert
rules have the shape Prometheus loads (and ``promtool check rules`` accepts them
when promtool is installed), and the dashboard selects by job and instance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.metrics import METRIC_NAMES, WS_METRIC_NAMES

DOCS = Path(__file__).resolve().parent.parent / "docs"
RULES = DOCS / "prometheus" / "alerts.yml"
SCRAPE = DOCS / "prometheus" / "prometheus.yml"
DASHBOARD = DOCS / "grafana" / "tradewarden.json"
#: what the alert rules must cover (the operations contract)
REQUIRED_ALERTS = {"TradewardenKillSwitchEngaged", "TradewardenExchangeStreamDown",
                   "TradewardenCircuitBreakerOpen", "TradewardenDeadLetters",
                   "TradewardenRuntimeHalted"}
_NAME = re.compile(r"\b((?:tradewarden|process|python)_[a-z0-9_]+)")


def _served() -> set[str]:
    """Every series name /metrics can carry (histograms with their parts)."""
    names = set(METRIC_NAMES) | set(WS_METRIC_NAMES)
    for n in list(names):
        if n.endswith("_seconds") and ("tick_to" in n or "hedge_lag" in n):
            names |= {n + s for s in ("_bucket", "_count", "_sum")}
    return names | {"process_resident_memory_bytes", "process_cpu_seconds_total"}


def _used(expr: str) -> set[str]:
    return set(_NAME.findall(expr))


def test_alert_rules_have_the_shape_prometheus_loads() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert all(set(g) <= {"name", "rules", "interval", "limit"} and g["name"]
               for g in doc["groups"])
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) and REQUIRED_ALERTS <= set(names)
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r
        assert r["labels"]["severity"] in ("page", "ticket") and r["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", str(r.get("for", "0m"))), r
        unknown = _used(r["expr"]) - _served()
        assert not unknown, f"{r['alert']} uses metrics the runtime does not serve: {unknown}"


def test_scrape_config_scrapes_the_control_endpoint_and_loads_the_rules() -> None:
    doc = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    assert doc["rule_files"] == ["alerts.yml"]
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "tradewarden")
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8765"]  # control's default


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules_and_the_config() -> None:
    for args in (["check", "rules", str(RULES)], ["check", "config", str(SCRAPE)]):
        proc = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_selects_job_and_instance_and_shows_trading_state_and_halts() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= set(variables)
    titles = {p["title"] for p in dash["panels"]}
    assert {"Trading state", "Kill switch", "Runtime halted",
            "Halts and no-new-risk periods"} <= titles
    for p in dash["panels"]:
        for t in p["targets"]:
            assert 'job="$job"' in t["expr"] and 'instance=~"$instance"' in t["expr"], p["title"]
            unknown = _used(t["expr"]) - _served()
            assert not unknown, f"panel {p['title']!r} uses unserved metrics {unknown}"
