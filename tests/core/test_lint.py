"""Lints (§17): shadowed routes, attributes nothing has, placement nothing can reach."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from envroute.config import parse_settings
from envroute.lint import lint
from envroute.settings import Settings
from envroute.stores.base import BackendRecord, CustomerRecord, KeyRecord, KeyStore
from tests.support.apps import SECRET

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BACKENDS = {n: {"url": f"http://127.0.0.1:9/{n}"} for n in ("shared", "v2", "sandbox")}


def settings(*routes: dict[str, Any], **extra: Any) -> Settings:
    return parse_settings({"secret": SECRET, "backends": BACKENDS, "routes": list(routes),
                           **extra})


class FakeStore:
    def __init__(self, keys: list[KeyRecord] = (), customers: list[CustomerRecord] | None = None,
                 backends: list[BackendRecord] | None = None) -> None:
        self.keys, self.customers, self.backends = list(keys), customers, backends

    def list_keys(self) -> list[KeyRecord]:
        return self.keys

    def list_customers(self) -> list[CustomerRecord]:
        if self.customers is None:
            raise NotImplementedError
        return self.customers

    def list_backends(self) -> list[BackendRecord]:
        if self.backends is None:
            raise NotImplementedError
        return self.backends


def key(metadata: dict[str, Any] | None = None, customer: str | None = None,
        revoked: bool = False) -> KeyRecord:
    return KeyRecord(id="key_1", environment="production", prefix="sk_live_", last4="abcd",
                     created_at=NOW, metadata=metadata or {}, customer_id=customer,
                     revoked_at=NOW if revoked else None)


def store(*keys: KeyRecord, customers: list[CustomerRecord] | None = None,
          backends: list[BackendRecord] | None = None) -> KeyStore:
    return cast(KeyStore, FakeStore(list(keys), customers, backends))


@pytest.mark.parametrize(("routes", "expected"), [
    pytest.param([{"when": {"environment": "production"}, "backend": "shared"},
                  {"when": {"environment": "production", "customer_id": "acme"},
                   "backend": "v2"}],
                 ["routes[1] can never match: routes[0] before it"], id="generic-first"),
    pytest.param([{"when": {}, "backend": "shared"}, {"when": {}, "backend": "v2", "name": "x"}],
                 ["routes[1] (x) can never match"], id="two-defaults"),
    pytest.param([{"when": {"tier": ["a", "b"]}, "backend": "shared"},
                  {"when": {"tier": "a"}, "backend": "v2"}],
                 ["routes[1] can never match"], id="any-of-covers-one"),
    pytest.param([{"when": {}, "request": {"path": "/v2/**"}, "backend": "v2"},
                  {"when": {"tier": "a"}, "request": {"path": "/v2/charges", "method": "GET"},
                   "backend": "shared"}],
                 ["routes[1] can never match"], id="request-covered"),
    pytest.param([{"when": {"environment": "production", "customer_id": "acme"},
                   "backend": "v2"},
                  {"when": {"environment": "production"}, "backend": "shared"}],
                 [], id="specific-first-is-fine"),
    pytest.param([{"when": {}, "backend_from": "backend"}, {"when": {}, "backend": "shared"}],
                 [], id="backend-from-passes-on"),
    pytest.param([{"when": {}, "request": {"method": "POST"}, "backend": "v2"},
                  {"when": {}, "backend": "shared"}], [], id="narrower-request-first"),
    pytest.param([{"when": {"tier": "a"}, "backend": "v2"},
                  {"when": {"tier": ["a", "b"]}, "backend": "shared"}], [],
                 id="partly-covered-is-fine"),
])
def test_shadowed_routes(routes: list[dict[str, Any]], expected: list[str]) -> None:
    found = lint(settings(*routes))
    assert len(found) == len(expected)
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start)


def test_attributes_no_key_or_customer_has() -> None:
    config = settings(
        {"when": {"enviroment": "production"}, "backend": "v2"},
        {"when": {"customer_id": "acme", "tier": "gold"}, "backend": "v2"},
        {"when": {}, "backend": "shared"},
        rate_limits={"rules": [{"limit": "1/second", "per": "customr",
                                "limit_from": "rate_limit"}]})
    found = lint(config, store(key({"tier": "gold"}, customer="acme", revoked=False),
                               customers=[CustomerRecord("acme", NOW,
                                                         metadata={"rate_limit": "9/s"})]))
    assert found == [
        "routes[0].when.enviroment: no key or customer in the store has 'enviroment' "
        "(a typo? it matches nothing until one does)",
        "rate_limits.rules[0].per: no key or customer in the store has 'customr' "
        "(a typo? it matches nothing until one does)"]


def test_a_request_condition_written_as_when_is_pointed_out() -> None:
    config = settings({"when": {}, "backend": "shared"}, rate_limits={"rules": [
        {"limit": "1/second", "when": {"method": "POST", "path": "/v1/charges"}}]})
    assert lint(config, store(key())) == [
        f"rate_limits.rules[0].when.{name}: no key or customer in the store has {name!r} "
        "(request conditions go in request = {method = ..., path = ...})"
        for name in ("method", "path")]


def test_revoked_keys_do_not_count_and_jwt_claims_do() -> None:
    config = settings({"when": {"tier": "gold"}, "backend": "v2"},
                      {"when": {}, "backend": "shared"})
    assert len(lint(config, store(key({"tier": "gold"}, revoked=True)))) == 1
    with_jwt = settings({"when": {"tier": "gold"}, "backend": "v2"},
                        {"when": {}, "backend": "shared"},
                        jwt={"algorithms": ["HS256"], "secret": "s" * 32,
                             "metadata_claims": ["tier"]})
    assert lint(with_jwt, store()) == []


def test_placement_that_no_backend_from_route_can_honour() -> None:
    config = settings({"when": {}, "backend_from": "backend", "allow": ["dedicated-*"]},
                      {"when": {}, "backend": "shared"})
    found = lint(config, store(
        key({"backend": "dedicated-gone"}),
        customers=[CustomerRecord("acme", NOW, metadata={"backend": "shared"}),
                   CustomerRecord("ok", NOW, metadata={"backend": "dedicated-ok"})],
        backends=[BackendRecord("dedicated-ok", "http://h/"), BackendRecord("orphan", "http://h/")]))
    assert found == [
        "customer acme: backend = 'shared' is not admitted by the allow of any backend_from "
        "route (dedicated-*)",
        "key key_1: backend = 'dedicated-gone' names no configured or stored backend (its "
        "requests get backend_unavailable)",
        "stored backend orphan: no backend_from route's allow admits it, so no request can "
        "reach it"]


def test_a_store_without_customers_or_stored_backends_is_linted_on_its_keys() -> None:
    config = settings({"when": {}, "backend_from": "backend"},
                      {"when": {}, "backend": "shared"})
    assert lint(config, store(key({"backend": "v2"}))) == []
