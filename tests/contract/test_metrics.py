"""§17's metrics endpoint: its names and labels, its token, and what it never counts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from envroute import CustomerManager, EnvRouter, KeyManager
from tests.support.apps import SECRET, text_app

pytest.importorskip("prometheus_client")

TOKEN = "metrics-token-0123456789"
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[EnvRouter]:
    router = EnvRouter(text_app("app"), {
        "secret": SECRET, "store": {"url": f"sqlite:///{tmp_path / 'keys.db'}"},
        "health": {"path": "/healthz"},
        "metrics": {"path": "/metrics", "token": TOKEN},
        "routes": [{"when": {"environment": "sandbox"}, "backend": "app"}]})
    yield router
    router.close()


def labels_of(text: str) -> dict[str, list[dict[str, str]]]:
    """Each metric name -> the label sets of its samples."""
    found: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            pairs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found.setdefault(match.group(1), []).append(pairs)
    return found


def scrape(gateway: EnvRouter) -> str:
    response = Client(gateway).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.get_data(as_text=True)


def test_names_and_labels(gateway: EnvRouter) -> None:
    CustomerManager(gateway.store, gateway.settings).create("acme")
    issued = KeyManager(gateway.store, gateway.settings).create("sandbox",
                                                                customer_id="acme")
    client = Client(gateway)
    for _ in range(2):
        client.get("/v1/charges", headers={"Authorization": f"Bearer {issued.secret}"}
                   ).close()
    client.get("/v1/charges").close()
    text = scrape(gateway)
    found = labels_of(text)
    assert {"environment": "sandbox", "backend": "app", "code": "ok"} in found[
        "envroute_requests_total"]
    assert any(s.get("code") == "missing_credentials"
               for s in found["envroute_requests_total"])
    assert {frozenset(s) for s in found["envroute_requests_total"]} == {
        frozenset({"environment", "backend", "code"})}
    assert {frozenset(s) - {"le"} for s in found["envroute_request_duration_seconds_bucket"]
            } == {frozenset({"environment", "backend"})}
    assert {s["result"] for s in found["envroute_auth_cache_total"]} >= {"hit", "miss"}
    assert re.search(r"^envroute_store_errors_total(\{\})? ", text, re.M)
    assert issued.record.id not in text and "acme" not in text


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-credential"),
    pytest.param({"Authorization": "Bearer another-token"}, id="another-token"),
    pytest.param({"X-API-Key": "sk_test_whatever"}, id="api-key"),
])
def test_token_is_required(gateway: EnvRouter, headers: dict[str, str]) -> None:
    response = Client(gateway).get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "envroute_requests_total" not in response.get_data(as_text=True)


def total(text: str) -> float:
    """All requests counted so far (the registry is the process's: compare, never equal)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("envroute_requests_total{"))


def test_health_and_metrics_are_not_counted(gateway: EnvRouter) -> None:
    client = Client(gateway)
    before = total(scrape(gateway))
    for _ in range(3):
        client.get("/healthz").close()
        client.get("/metrics").close()
        client.get("/metrics", headers={"Authorization": "Bearer wrong"}).close()
    text = scrape(gateway)
    assert total(text) == before
    assert "/healthz" not in text and "/metrics" not in text
