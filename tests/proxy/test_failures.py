"""Upstreams that refuse, stall, reset or die: 502, 504, failover, and a clean end."""

from __future__ import annotations

import io
import logging

import pytest
from werkzeug.test import Client

from envroute import BackendTimeout, BackendUnavailable, EnvRouter
from envroute.errors import BadRequestBody
from envroute.proxy import ProxyBackend
from tests.proxy.conftest import Upstream, auth, echoed


def backend(gateway: EnvRouter, name: str) -> ProxyBackend:
    found = gateway.backends[name]
    assert isinstance(found, ProxyBackend)
    return found


@pytest.mark.parametrize(("route", "headers", "status", "code"), [
    pytest.param("dead", {}, 502, "backend_unavailable", id="refused"),
    pytest.param("echo", {"X-Upstream-Do": "reset"}, 502, "backend_unavailable", id="reset"),
    pytest.param("slow", {"X-Upstream-Do": "sleep:3"}, 504, "backend_timeout",
                 id="read-timeout"),
    pytest.param("blackhole", {}, 504, "backend_timeout", id="connect-timeout"),
])
def test_unreachable_backends_are_problems(client: Client, keys: dict[str, str],
                                           primary: Upstream, route: str,
                                           headers: dict[str, str], status: int,
                                           code: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        response = client.get("/v1/x?token=tok_private", headers=auth(keys[route], **headers))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"backend {route} " in logged  # the failure is logged, naming the backend...
    assert "tok_private" not in logged  # ...but not the request's query string
    assert keys[route] not in logged
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == code
    assert problem["request_id"] == response.headers["Request-Id"]
    assert "127.0.0.1" not in response.get_data(as_text=True)


@pytest.mark.parametrize("action", ["die:1000", "diechunked"])
def test_an_upstream_dying_mid_response_ends_the_response_with_an_error(
        client: Client, keys: dict[str, str], primary: Upstream, action: str,
        caplog: pytest.LogCaptureFixture) -> None:
    response = client.get("/", headers=auth(keys["echo"], **{"X-Upstream-Do": action}),
                          buffered=False)
    assert response.status_code == 200  # the head had already been passed on
    received = bytearray()
    with caplog.at_level(logging.WARNING, logger="envroute"), \
            pytest.raises(BackendUnavailable, match="broke off"):
        for piece in response.response:
            received += piece
    response.close()
    assert 0 < len(received) < 2000 or action == "diechunked"
    assert [r for r in caplog.records if r.name == "envroute" and "broke off" in r.message]


# (route, method, body, action, status, primary count, secondary count)
FAILOVER = [
    pytest.param("failover-dead", "GET", b"", "", 200, 0, 1, id="refused-GET-fails-over"),
    pytest.param("failover-dead", "HEAD", b"", "", 200, 0, 1, id="refused-HEAD-fails-over"),
    pytest.param("failover-dead", "PUT", b"x" * 100_000, "", 200, 0, 1,
                 id="refused-PUT-fails-over-with-its-whole-body"),
    pytest.param("failover-dead", "POST", b"charge", "", 502, 0, 0,
                 id="refused-POST-is-not-retried"),
    pytest.param("failover-reset", "GET", b"", "reset@primary", 200, 1, 1,
                 id="reset-GET-fails-over"),
    pytest.param("failover-reset", "DELETE", b"", "reset@primary", 200, 1, 1,
                 id="reset-DELETE-fails-over"),
    pytest.param("failover-reset", "POST", b"charge", "reset@primary", 502, 1, 0,
                 id="reset-POST-is-sent-once"),
    pytest.param("failover-reset", "POST", b"", "reset@primary", 502, 1, 0,
                 id="reset-POST-without-body-is-sent-once"),
    pytest.param("failover-reset", "PUT", b"body", "reset@primary", 502, 1, 0,
                 id="reset-PUT-after-its-body-was-sent-is-sent-once"),
    pytest.param("failover-reset", "GET", b"", "sleep:0.1@primary", 200, 1, 0,
                 id="a-healthy-primary-serves"),
]


@pytest.mark.parametrize(("route", "method", "body", "action", "status", "first", "second"),
                         FAILOVER)
def test_failover(client: Client, keys: dict[str, str], primary: Upstream,
                  secondary: Upstream, route: str, method: str, body: bytes, action: str,
                  status: int, first: int, second: int) -> None:
    headers = auth(keys[route], **({"X-Upstream-Do": action} if action else {}))
    response = client.open("/v1/orders", method=method, data=body, headers=headers)
    assert response.status_code == status
    assert primary.stats()["requests"] == first
    assert secondary.stats()["requests"] == second
    if status == 200 and method != "HEAD":
        echo = echoed(response.data)
        assert echo["name"] == ("secondary" if second else "primary")
        assert echo["body_length"] == len(body)
    if status == 502:
        assert response.get_json()["code"] == "backend_unavailable"


def test_split_is_sticky_per_key_and_uses_every_backend(
        client: Client, keys: dict[str, str], primary: Upstream,
        secondary: Upstream) -> None:
    chosen: dict[str, set[str]] = {}
    for index in range(20):
        key = keys[f"split-{index}"]
        for _ in range(3):
            response = client.get("/v1/x", headers=auth(key))
            chosen.setdefault(key, set()).add(echoed(response.data)["name"])
    assert all(len(names) == 1 for names in chosen.values())
    assert set.union(*chosen.values()) == {"primary", "secondary"}
    assert primary.stats()["requests"] + secondary.stats()["requests"] == 60


def test_a_body_shorter_than_its_content_length_is_never_replayed(
        gateway: EnvRouter, primary: Upstream) -> None:
    environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": "/x", "CONTENT_LENGTH": "100000",
               "wsgi.input": io.BytesIO(b"x" * 70_000), "wsgi.url_scheme": "http"}
    # the caller's fault (400 invalid_request), never blamed on the backend nor replayed
    with pytest.raises(BadRequestBody, match="30000 bytes short"):
        backend(gateway, "echo")(environ, lambda *args: None)


def test_check_describes_a_reachable_backend(gateway: EnvRouter, primary: Upstream) -> None:
    line = backend(gateway, "based").check()
    assert line == line.strip() and "\n" not in line
    assert line.startswith(f"http://127.0.0.1:{primary.port}/base answered 200 OK")
    # Only what check() sent to its own path: the session-wide upstream may still be
    # receiving a request that an earlier test gave up on (its log is shared).
    assert [entry for entry in primary.stats()["log"] if entry[1].startswith("/base")] == [
        ["HEAD", "/base"]]


@pytest.mark.parametrize(("name", "error"), [
    pytest.param("dead", BackendUnavailable, id="refused"),
    pytest.param("blackhole", BackendTimeout, id="connect-timeout"),
])
def test_check_raises_for_an_unreachable_backend(gateway: EnvRouter, name: str,
                                                 error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        backend(gateway, name).check()
    assert getattr(info.value, "backend", None) == name
