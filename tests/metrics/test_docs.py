"""The documented PromQL and the Grafana dashboard name only series the gateway exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from envroute import metrics
from envroute.settings import MetricsSettings

from .support import parse

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\benvroute_[a-z_]+")


def exposed() -> set[str]:
    endpoint = metrics.enable(MetricsSettings(path="/metrics"))
    assert endpoint is not None
    for status in (200, 429):
        metrics.observe_request("sandbox", "app", "ok", 0.01, status)
    metrics.observe_upstream("app", 0.01)
    metrics.auth_cache("hit")
    metrics.auth_cache("miss")
    samples = {name for name, _ in parse(endpoint._recorder.render().decode())}
    return samples | {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in samples}


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return queries + [v["definition"] for v in dashboard["templating"]["list"]]


@pytest.mark.parametrize(("document", "queries"), [
    pytest.param("metrics.md", lambda: [(DOCS / "metrics.md").read_text()], id="metrics.md"),
    pytest.param("grafana-dashboard.json", dashboard_queries, id="grafana-dashboard"),
])
def test_documented_series_exist(document: str, queries: object) -> None:
    names = {name for text in queries() for name in NAME.findall(text)}  # type: ignore[operator]
    assert names, document
    assert names <= exposed(), names - exposed()
