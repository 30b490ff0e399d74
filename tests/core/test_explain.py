"""``envroute explain`` sends nothing and spends nothing: a dry run of the request's path."""

from __future__ import annotations

from typing import Any

from werkzeug.test import Client

from envroute import EnvRouter, KeyManager
from envroute.policies import DRY_RUN_KEY
from tests.support.apps import SECRET, text_app


def test_a_dry_run_does_not_spend_rate_limit(store_url: str) -> None:
    router = EnvRouter(text_app("app"), {
        "secret": SECRET, "store": {"url": store_url},
        "rate_limits": {"rules": [{"limit": "2/minute", "per": "key"}]}})
    key = KeyManager(router.store, router.settings).create("sandbox").secret

    def explain() -> Any:
        return router.admit({"REQUEST_METHOD": "GET", "PATH_INFO": "/", DRY_RUN_KEY: True,
                             "HTTP_AUTHORIZATION": f"Bearer {key}"})

    for _ in range(5):
        assert explain().decision.backends == ("app",)
    client = Client(router)
    statuses = [client.get("/", headers={"X-API-Key": key}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
