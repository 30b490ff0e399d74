"""Restricted keys: ``[scopes]`` patterns, and 403 ``insufficient_scope`` outside them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import ConfigError, EnvRouter
from envroute.identity import Identity
from envroute.scopes import ScopePolicy, compile_pattern

from .conftest import GatewayFactory, config, manager

SCOPES = {
    "charges:read": ["GET /v1/charges", "GET /v1/charges/*"],
    "charges:write": ["POST /v1/charges/**"],
    "anything:delete": ["DELETE /**"],
    "ping": ["* /v1/ping"],
}


@pytest.mark.parametrize(("scope", "method", "path", "allowed"), [
    pytest.param("charges:read", "GET", "/v1/charges", True, id="exact"),
    pytest.param("charges:read", "HEAD", "/v1/charges", True, id="head-where-get"),
    pytest.param("charges:read", "get", "/v1/charges", True, id="method-case"),
    pytest.param("charges:read", "GET", "/v1/charges/ch_1", True, id="star-one-segment"),
    pytest.param("charges:read", "GET", "/v1/charges/ch_1/refunds", False,
                 id="star-not-two-segments"),
    pytest.param("charges:read", "GET", "/v1/charges/", False, id="star-not-empty"),
    pytest.param("charges:read", "POST", "/v1/charges", False, id="wrong-method"),
    pytest.param("charges:read", "GET", "/v1/chargesX", False, id="no-prefix-match"),
    pytest.param("charges:read", "GET", "/v1/charges/../customers", False, id="dot-dot"),
    pytest.param("charges:read", "GET", "/v1/charges/.", False, id="dot"),
    pytest.param("charges:write", "POST", "/v1/charges", True, id="double-star-nothing"),
    pytest.param("charges:write", "POST", "/v1/charges/ch_1/capture", True,
                 id="double-star-rest"),
    pytest.param("charges:write", "HEAD", "/v1/charges", False, id="head-only-with-get"),
    pytest.param("anything:delete", "DELETE", "/", True, id="root-double-star"),
    pytest.param("anything:delete", "DELETE", "/a/b/c", True, id="everything"),
    pytest.param("ping", "PATCH", "/v1/ping", True, id="any-method"),
    pytest.param("ping", "GET", "/v1/ping/x", False, id="any-method-exact-path"),
    pytest.param("undefined:scope", "GET", "/v1/charges", False, id="undefined-allows-nothing"),
])
def test_patterns(scope: str, method: str, path: str, allowed: bool) -> None:
    policy = ScopePolicy({k: tuple(v) for k, v in SCOPES.items()})
    assert policy.allows(frozenset({scope}), method, path) is allowed


@pytest.mark.parametrize("pattern", [
    pytest.param("GET /v1/**/charges", id="double-star-not-last"),
    pytest.param("GET /v1/ch*", id="partial-star"),
    pytest.param("GET v1", id="relative-path"),
])
def test_bad_patterns_stop_start_up(pattern: str, make_gateway: GatewayFactory,
                                    tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="'"):
        compile_pattern(pattern)
    with pytest.raises(ConfigError, match=r"scopes\.bad"):
        make_gateway(config(f"sqlite:///{tmp_path / 'k.db'}", scopes={"bad": [pattern]}))


def test_unrestricted_identities_pass_everything() -> None:
    policy = ScopePolicy({})
    assert policy.check(Identity("key_1", "sandbox"), {"REQUEST_METHOD": "PUT",
                                                       "PATH_INFO": "/x"}) == []


@pytest.fixture
def gateway(make_gateway: GatewayFactory, any_store_url: str) -> EnvRouter:
    return make_gateway(config(any_store_url, scopes=SCOPES))


def test_restricted_key_through_the_gateway(gateway: EnvRouter) -> None:
    issued = manager(gateway).create("sandbox", scopes=["charges:read"],
                                     metadata={"customer": "acme"})
    assert issued.secret.startswith("rk_test_")
    client = Client(gateway)
    headers = {"Authorization": f"Bearer {issued.secret}"}
    allowed = client.get("/v1/charges/ch_1", headers=headers)
    assert allowed.status_code == 200
    assert allowed.get_data(as_text=True).startswith("sandbox")
    assert client.head("/v1/charges", headers=headers).status_code == 200

    refused = client.post("/v1/charges", headers=headers)
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    body = json.loads(refused.get_data())
    assert body["code"] == "insufficient_scope"
    assert "POST /v1/charges" in body["detail"]
    assert "charges:read" in body["detail"]
    assert issued.secret not in refused.get_data(as_text=True)


def test_unrestricted_key_is_not_limited_by_scopes(gateway: EnvRouter) -> None:
    issued = manager(gateway).create("sandbox")
    assert issued.secret.startswith("sk_test_")
    response = Client(gateway).delete("/anything/at/all",
                                      headers={"Authorization": f"Bearer {issued.secret}"})
    assert response.status_code == 200


def test_records_show_their_scopes(gateway: EnvRouter) -> None:
    keys = manager(gateway)
    issued = keys.create("production", scopes=["charges:read", "ping", "charges:read"])
    assert issued.secret.startswith("rk_live_")
    shown = keys.get(issued.record.id).to_dict()
    assert shown["scopes"] == ["charges:read", "ping"]
    listed = {r.id: r.to_dict()["scopes"] for r in keys.list()}
    assert listed[issued.record.id] == ["charges:read", "ping"]
    assert issued.to_dict()["scopes"] == ["charges:read", "ping"]


# -- 0.2: a scope decides on what the backend will act on (issue 9) ---------------------


@pytest.mark.parametrize("path", [
    pytest.param("/v1/charges/..;/admin", id="dot-dot-semicolon"),
    pytest.param("/v1/charges/..;x=1/admin", id="dot-dot-parameters"),
    pytest.param("/v1/charges/.;/ch_1", id="dot-semicolon"),
    pytest.param("/v1/charges/%2e%2e/admin", id="encoded-dot-dot"),
    pytest.param("/v1/charges/%2E%2e;/admin", id="encoded-mixed-case-semicolon"),
    pytest.param("/v1/charges/.%2e/admin", id="half-encoded"),
    pytest.param("/v1/charges/%252e%252e/admin", id="double-encoded"),
    pytest.param("/v1/charges/..%3b/admin", id="encoded-semicolon"),
    pytest.param("/v1/charges/..%5cadmin", id="encoded-backslash"),
    pytest.param("/v1/charges/ch_1\\..\\..\\admin", id="backslashes"),
    pytest.param("/v1/charges/..%00", id="nul-after-dots"),
])
def test_dot_segments_in_any_reading_are_refused(path: str) -> None:
    policy = ScopePolicy({k: tuple(v) for k, v in SCOPES.items()})
    assert not policy.allows(frozenset({"charges:read", "anything:delete"}), "GET", path)


@pytest.mark.parametrize("path", [
    pytest.param("/v1/charges/ch_1;v=2", id="parameter-not-dots"),
    pytest.param("/v1/charges/..x", id="dots-then-name"),
    pytest.param("/v1/charges/%25", id="literal-percent"),
])
def test_names_that_only_look_like_dots_pass(path: str) -> None:
    policy = ScopePolicy({"read": ("GET /v1/charges/*",)})
    assert policy.allows(frozenset({"read"}), "GET", path)


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method",
                                    "X-Method-Override"])
def test_method_override_headers_never_reach_a_backend_of_a_restricted_key(
        make_gateway: GatewayFactory, tmp_path: Any, header: str) -> None:
    seen: list[dict[str, Any]] = []

    def backend(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    gateway = EnvRouter(backend, config(f"sqlite:///{tmp_path / 'k.db'}", scopes=SCOPES),
                        backends={"sandbox": backend})
    try:
        keys = manager(gateway)
        restricted = keys.create("sandbox", scopes=["charges:read"]).secret
        plain = keys.create("sandbox").secret
        client = Client(gateway)
        response = client.get("/v1/charges", headers={"Authorization": f"Bearer {restricted}",
                                                      header: "DELETE"})
        assert response.status_code == 200
        environ_name = "HTTP_" + header.upper().replace("-", "_")
        assert environ_name not in seen[-1]
        client.get("/v1/charges", headers={"Authorization": f"Bearer {plain}",
                                           header: "DELETE"})
        assert seen[-1][environ_name] == "DELETE"  # an unrestricted key is not rewritten
    finally:
        gateway.store.close()


def test_a_raw_uri_with_dot_segments_is_refused_for_a_restricted_key() -> None:
    policy = ScopePolicy({"read": ("GET /v1/files/*",)})
    identity = Identity("key_1", "sandbox", scopes=frozenset({"read"}))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/files/x",
               "RAW_URI": "/v1/files/..;/admin?x=1"}
    with pytest.raises(Exception, match="outside this credential's scopes"):
        policy.check(identity, environ)
