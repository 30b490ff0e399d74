"""Routing: first match wins, request conditions, backend_from with allow, and the index."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from envroute.config import parse_settings
from envroute.identity import Identity
from envroute.problems import Problem
from envroute.routing import Router, matches
from tests.support.apps import SECRET

BACKENDS = {name: {"url": f"http://127.0.0.1:9/{name}"}
            for name in ("shared", "v2", "sandbox", "posts", "other")}


def router(*routes: dict[str, Any]) -> Router:
    settings = parse_settings({"secret": SECRET, "backends": BACKENDS, "routes": list(routes)})
    return Router(settings.routes)


def environ(method: str = "GET", path: str = "/v1/charges") -> dict[str, Any]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path}


def who(environment: str = "production", customer: str | None = None,
        **metadata: Any) -> Identity:
    return Identity("key_1", environment, metadata=metadata, customer_id=customer)


ROUTES = [
    {"when": {"environment": "sandbox"}, "backend": "sandbox"},
    {"when": {"environment": "production"}, "backend_from": "backend",
     "allow": ["dedicated-*", "eu-?"]},
    {"when": {"tier": "enterprise"}, "request": {"path": "/v2/**"}, "backend": "v2"},
    {"when": {}, "request": {"method": ["POST", "put"], "path": ["/v1/charges",
                                                                 "/v1/charges/*"]},
     "backend": "posts"},
    {"when": {}, "backend": "shared"},
]


@pytest.mark.parametrize(("identity", "request_", "backend"), [
    pytest.param(who("sandbox", backend="dedicated-a"), environ(), "sandbox",
                 id="first-match-wins"),
    pytest.param(who(backend="dedicated-acme"), environ(), "dedicated-acme",
                 id="backend-from-allowed"),
    pytest.param(who(backend="eu-1"), environ(), "eu-1", id="allow-question-mark"),
    pytest.param(who(), environ(), "shared", id="no-attribute-next-route"),
    pytest.param(who(backend=""), environ(), "shared", id="empty-attribute-next-route"),
    pytest.param(who(tier="enterprise"), environ(path="/v2/charges/ch_1"), "v2",
                 id="request-path-double-star"),
    pytest.param(who(tier="enterprise"), environ(path="/v2"), "v2", id="double-star-empty"),
    pytest.param(who(tier="enterprise"), environ(path="/v1/charges"), "shared",
                 id="request-path-no-match"),
    pytest.param(who(), environ("POST"), "posts", id="request-method-list"),
    pytest.param(who(), environ("put", "/v1/charges/ch_1"), "posts", id="method-case"),
    pytest.param(who(), environ("POST", "/v1/charges/ch_1/refunds"), "shared",
                 id="star-is-one-segment"),
    pytest.param(who(), environ("GET"), "shared", id="method-no-match"),
])
def test_routes(identity: Identity, request_: dict[str, Any], backend: str) -> None:
    assert router(*ROUTES).route(identity, request_).backends == (backend,)


@pytest.mark.parametrize("name", ["shared", "dedicated", "xdedicated-a", "eu-12"])
def test_backend_from_outside_allow_is_backend_unavailable_never_another_backend(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="envroute"), \
            pytest.raises(Problem) as caught:
        router(*ROUTES).route(who(backend=name), environ())
    assert caught.value.code == "backend_unavailable"
    assert repr(name) in caplog.text


def test_customer_id_is_read_from_the_identity_never_from_metadata() -> None:
    routes = router({"when": {"customer_id": "acme"}, "backend": "v2"},
                    {"when": {}, "backend": "shared"})
    assert routes.route(who(customer="acme"), environ()).backends == ("v2",)
    assert routes.route(who(customer_id="acme"), environ()).backends == ("shared",)


def test_get_matches_head_in_request_conditions() -> None:
    routes = router({"when": {}, "request": {"method": "GET"}, "backend": "v2"},
                    {"when": {}, "backend": "shared"})
    assert routes.route(who(), environ("HEAD")).backends == ("v2",)


def test_no_route_is_refused() -> None:
    with pytest.raises(Problem) as caught:
        router({"when": {"environment": "sandbox"}, "backend": "sandbox"}).route(
            who(), environ())
    assert caught.value.code == "no_route"


def test_the_index_keeps_first_match_order_exactly() -> None:
    """Random routes over a few attributes: the indexed router agrees with a linear scan."""
    rng = random.Random(7)
    values = {"customer_id": ["a", "b", "c", "d"], "tier": ["free", "pro"],
              "environment": ["sandbox", "production"], "region": ["eu", "us"]}
    names = list(BACKENDS)
    for _ in range(40):
        routes = []
        for _ in range(rng.randint(1, 12)):
            when = {attr: rng.sample(vals, rng.randint(1, len(vals)))
                    for attr, vals in values.items() if rng.random() < 0.4}
            route: dict[str, Any] = {"when": when, "backend": rng.choice(names)}
            if rng.random() < 0.2:
                route["request"] = {"method": rng.choice(["GET", "POST"])}
            routes.append(route)
        routes.append({"when": {}, "backend": "other"})
        compiled = router(*routes)
        for _ in range(30):
            identity = who(rng.choice(values["environment"]),
                           rng.choice([*values["customer_id"], None]),
                           **{a: rng.choice(v) for a, v in values.items()
                              if a not in ("customer_id", "environment") and rng.random() < 0.7})
            request_ = environ(rng.choice(["GET", "POST"]))
            expected = next(r for r in compiled.routes if matches(r.when, identity) and (
                r.request is None or request_["REQUEST_METHOD"] in r.request.methods
                or (request_["REQUEST_METHOD"] == "HEAD" and "GET" in r.request.methods)))
            assert compiled.route(identity, request_).route is expected


def test_many_unindexed_routes_keep_their_order() -> None:
    routes = [{"when": {}, "request": {"path": f"/p{i}"}, "backend": "v2"} for i in range(40)]
    compiled = router({"when": {"customer_id": "acme"}, "request": {"path": "/p39"},
                       "backend": "posts"}, *routes, {"when": {"customer_id": "acme"},
                                                      "backend": "other"},
                      {"when": {}, "backend": "shared"})
    assert compiled.route(who(customer="acme"), environ(path="/p39")).backends == ("posts",)
    assert compiled.route(who(customer="acme"), environ(path="/p5")).backends == ("v2",)
    assert compiled.route(who(customer="acme"), environ(path="/x")).backends == ("other",)
    assert compiled.route(who(customer="zed"), environ(path="/x")).backends == ("shared",)


def test_many_per_customer_routes_and_a_default() -> None:
    routes = [{"when": {"environment": "production", "customer_id": f"cus_{i}"},
               "backend": "v2" if i % 2 else "posts"} for i in range(2000)]
    compiled = router(*routes, {"when": {}, "backend": "shared"})
    assert compiled.route(who(customer="cus_1999"), environ()).backends == ("v2",)
    assert compiled.route(who(customer="cus_1998"), environ()).backends == ("posts",)
    assert compiled.route(who("sandbox", customer="cus_1"), environ()).backends == ("shared",)
    assert compiled.route(who(customer="nobody"), environ()).backends == ("shared",)
