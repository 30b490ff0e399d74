"""Rate limits: rules per key, environment and metadata; headers; 429; storage failures."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter
from envroute.identity import Identity
from envroute.ratelimit import RateLimitPolicy
from envroute.settings import RateLimitRule, RateLimitSettings
from tests.support.processes import free_port

from .conftest import GatewayFactory, config, manager

STRATEGIES = [pytest.param(s, id=s)
              for s in ("moving-window", "fixed-window", "sliding-window-counter")]


def limits(*rules: dict[str, Any], storage: str = "memory://", strategy: str = "moving-window",
           on_storage_error: str = "deny") -> dict[str, Any]:
    return {"storage": storage, "strategy": strategy, "on_storage_error": on_storage_error,
            "rules": list(rules)}


def get(gateway: EnvRouter, key: str, path: str = "/v1/charges") -> Any:
    return Client(gateway).get(path, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'k.db'}"


STORAGES = [pytest.param("memory", id="memory"), pytest.param("redis", id="redis")]


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_over_the_limit_is_429_with_headers(make_gateway: GatewayFactory, sqlite_url: str,
                                             strategy: str, storage: str) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        {"limit": "3/minute"}, strategy=strategy, storage=storage)))
    key = manager(gateway).create("sandbox").secret
    remaining = []
    for _ in range(3):
        response = get(gateway, key)
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = get(gateway, key)
    assert refused.status_code == 429
    body = json.loads(refused.get_data())
    assert body["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    other = manager(gateway).create("sandbox").secret
    assert get(gateway, other).status_code == 200  # per key: another key is not affected


def test_the_closest_limit_is_reported_and_any_refuses(make_gateway: GatewayFactory,
                                                       sqlite_url: str, storage: str) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        {"limit": "100/second;2/hour"}, {"limit": "5/minute", "per": "customer"},
        storage=storage)))
    key = manager(gateway).create("sandbox", metadata={"customer": secrets.token_hex(4)}).secret
    first = get(gateway, key)
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("2", "1")
    assert get(gateway, key).status_code == 200
    refused = get(gateway, key)
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Limit"] == "2"
    assert int(refused.headers["Retry-After"]) > 60  # the hour's window


@pytest.mark.parametrize(("rule", "metadata", "second", "counted", "limited"), [
    pytest.param({"per": "environment"}, [{}, {}], "sandbox", True, True,
                 id="per-environment-shared"),
    pytest.param({"per": "environment"}, [{}, {}], "production", True, False,
                 id="per-environment-separate"),
    pytest.param({"per": "customer"}, [{"customer": "acme"}, {"customer": "acme"}], "sandbox",
                 True, True, id="per-metadata-shared"),
    pytest.param({"per": "customer"}, [{"customer": "acme"}, {"customer": "zeta"}], "sandbox",
                 True, False, id="per-metadata-separate"),
    pytest.param({"per": "customer"}, [{}, {}], "sandbox", False, False,
                 id="no-value-rule-does-not-apply"),
    pytest.param({"when": {"tier": "free"}}, [{"tier": "free"}, {"tier": "free"}], "sandbox",
                 True, False, id="when-matches-per-key"),
    pytest.param({"when": {"tier": "free"}, "per": "tier"},
                 [{"tier": "free"}, {"tier": "free"}], "sandbox", True, True,
                 id="when-matches-per-tier"),
    pytest.param({"when": {"tier": "free"}}, [{"tier": "pro"}, {"tier": "pro"}], "sandbox",
                 False, False, id="when-does-not-match"),
])
def test_rules_count_per_subject(make_gateway: GatewayFactory, sqlite_url: str,
                                 rule: dict[str, Any], metadata: list[dict[str, str]],
                                 second: str, counted: bool, limited: bool) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits({"limit": "1/minute",
                                                                  **rule})))
    keys = manager(gateway)
    one = keys.create("sandbox", metadata=metadata[0]).secret
    two = keys.create(second, metadata=metadata[1]).secret
    first = get(gateway, one)
    assert first.status_code == 200
    assert ("RateLimit-Limit" in first.headers) is counted
    assert (get(gateway, two).status_code == 429) is limited


def test_scopes_refuse_before_the_limit_counts(make_gateway: GatewayFactory,
                                               sqlite_url: str) -> None:
    gateway = make_gateway(config(sqlite_url, scopes={"read": ["GET /v1/**"]},
                                  rate_limits=limits({"limit": "1/minute"})))
    key = manager(gateway).create("sandbox", scopes=["read"]).secret
    refused = Client(gateway).post("/v1/charges", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    assert json.loads(refused.get_data())["code"] == "insufficient_scope"
    assert get(gateway, key).status_code == 200


@pytest.mark.parametrize(("on_error", "status"), [
    pytest.param("deny", 503, id="deny"),
    pytest.param("allow", 200, id="allow"),
])
def test_unreachable_storage(make_gateway: GatewayFactory, sqlite_url: str, on_error: str,
                             status: int) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        {"limit": "10/minute"}, storage=f"redis://127.0.0.1:{free_port()}/0",
        on_storage_error=on_error)))
    key = manager(gateway).create("sandbox").secret
    response = get(gateway, key)
    assert response.status_code == status
    if status == 503:
        assert json.loads(response.get_data())["code"] == "store_unavailable"
    assert "RateLimit-Limit" not in response.headers


def test_redis_is_one_limit_for_every_gateway(make_gateway: GatewayFactory, sqlite_url: str,
                                              redis_url: str) -> None:
    settings = config(sqlite_url, rate_limits=limits({"limit": "4/minute"}, storage=redis_url))
    gateways = [make_gateway(settings) for _ in range(2)]
    key = manager(gateways[0]).create("sandbox").secret
    statuses = [get(gateways[i % 2], key).status_code for i in range(8)]
    assert statuses == [200] * 4 + [429] * 4


def test_storage_is_rebuilt_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RateLimitPolicy(RateLimitSettings(rules=(RateLimitRule(0, "1/minute"),)))
    identity = Identity(f"key_{secrets.token_hex(4)}", "sandbox")
    policy.check(identity, {})
    parent = policy.limiter()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked worker
    assert policy.limiter() is not parent
    assert policy.check(identity, {})  # the child counts afresh (memory:// is per process)


# -- 0.2: request conditions, limits from metadata, one round trip (issues 11, 14) -------


def test_request_conditions_pick_the_rules_that_count(make_gateway: GatewayFactory,
                                                      sqlite_url: str) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        {"limit": "1/minute", "request": {"method": "POST", "path": "/v1/charges"}},
        {"limit": "50/minute", "request": {"path": "/v2/**"}})))
    key = manager(gateway).create("sandbox").secret
    headers = {"Authorization": f"Bearer {key}"}
    client = Client(gateway)
    assert "RateLimit-Limit" not in get(gateway, key, "/v1/refunds").headers
    assert get(gateway, key, "/v1/charges").status_code == 200  # a GET: not counted
    assert client.post("/v1/charges", headers=headers).status_code == 200
    assert client.post("/v1/charges", headers=headers).status_code == 429
    assert client.post("/v1/charges/ch_1", headers=headers).status_code == 200
    assert get(gateway, key, "/v2/x/y").headers["RateLimit-Limit"] == "50"


@pytest.mark.parametrize(("value", "limit", "warned"), [
    pytest.param("2/minute", "2", False, id="from-metadata"),
    pytest.param("2 per minute", "2", False, id="limits-notation"),
    pytest.param(None, "5", False, id="absent-uses-limit"),
    pytest.param("lots", "5", True, id="invalid-uses-limit-and-warns"),
    pytest.param("1/fortnight", "5", True, id="unknown-unit"),
])
def test_limit_from_reads_the_identity(make_gateway: GatewayFactory, sqlite_url: str,
                                       caplog: pytest.LogCaptureFixture, value: str | None,
                                       limit: str, warned: bool) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        {"limit": "5/minute", "limit_from": "rate_limit"})))
    metadata = {} if value is None else {"rate_limit": value}
    key = manager(gateway).create("sandbox", metadata=metadata).secret
    with caplog.at_level(logging.WARNING, logger="envroute"):
        response = get(gateway, key)
        get(gateway, key)
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == limit
    bad = [r for r in caplog.records if "is not a limit" in r.getMessage()]
    assert len(bad) == (1 if warned else 0)  # once per bad value, not once per request


def test_rules_indexed_by_customer_apply_in_order(make_gateway: GatewayFactory,
                                                  sqlite_url: str) -> None:
    rules = [{"limit": f"{i + 10}/minute", "when": {"customer": f"c{i}"}} for i in range(300)]
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        *rules, {"limit": "1000/minute", "per": "environment"})))
    key = manager(gateway).create("sandbox", metadata={"customer": "c7"}).secret
    assert get(gateway, key).headers["RateLimit-Limit"] == "17"


def test_redis_is_one_round_trip_whatever_the_number_of_rules(
        make_gateway: GatewayFactory, sqlite_url: str, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = make_gateway(config(sqlite_url, rate_limits=limits(
        {"limit": "100/second;1000/hour"}, {"limit": "100/minute", "per": "region"},
        {"limit": "100/minute", "per": "customer"}, storage=redis_url)))
    # every subject random: other test runs share this Redis
    key = manager(gateway).create("sandbox", metadata={"customer": secrets.token_hex(4),
                                                       "region": secrets.token_hex(4)}).secret
    assert get(gateway, key).status_code == 200  # loads the script
    policy = next(p for p in gateway.policies if isinstance(p, RateLimitPolicy))
    client = policy.limiter().client  # type: ignore[attr-defined]
    calls: list[Any] = []
    original = client.execute_command

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counted)
    response = get(gateway, key)
    assert response.status_code == 200
    assert response.headers["RateLimit-Remaining"] == "98"
    assert calls == ["EVALSHA"]
