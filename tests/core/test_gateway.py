"""EnvRouter as a caller and a backend see it, through werkzeug's test client."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from wsgiref.validate import validator

import pytest
from werkzeug.test import Client

from envroute import (
    BackendTimeout,
    BackendUnavailable,
    BadRequestBody,
    ConfigError,
    EnvironmentMismatch,
    EnvRouter,
    IssuedKey,
    KeyManager,
    StoreUnavailable,
)
from envroute.keys import checksum, generate_secret, hash_key
from envroute.stores.base import KeyRecord, utcnow
from tests.support import broken_apps
from tests.support.apps import SECRET, text_app
from tests.support.broken_apps import BEFORE_BODY

MakeKey = Callable[..., IssuedKey]


def problem(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.get_data())
    assert set(body) == {"type", "title", "status", "detail", "code", "request_id"}
    assert body["status"] == response.status_code
    assert body["request_id"] == response.headers["Request-Id"]
    return body


class Recorder:
    """A backend that remembers the environ it was called with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Request-Id", "forged")])
        return [b"recorded"]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gateway(base_config: dict[str, Any], recorder: Recorder) -> EnvRouter:
    config = {**base_config, "auth": {"query_param": "api_key"}}
    return EnvRouter(text_app("production"), config, backends={"sandbox": recorder})


def auth_headers(where: str, key: str) -> dict[str, str]:
    if where == "bearer":
        return {"Authorization": f"Bearer {key}"}
    if where == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    return {"X-API-Key": key}


@pytest.mark.parametrize("where", ["bearer", "basic", "header"])
def test_each_credential_form_reaches_the_routed_backend(router: EnvRouter, make_key: MakeKey,
                                                         where: str) -> None:
    test_key, live_key = make_key("sandbox"), make_key("production")
    client = Client(router)
    sandbox = client.get("/v1/charges", headers=auth_headers(where, test_key.secret))
    live = client.get("/v1/charges", headers=auth_headers(where, live_key.secret))
    assert sandbox.status_code == 200 and live.status_code == 200
    assert sandbox.get_data(as_text=True) == f"sandbox {test_key.record.id} sandbox"
    assert live.get_data(as_text=True) == f"production {live_key.record.id} production"


def test_query_string_keys_are_off_unless_configured(router: EnvRouter,
                                                     make_key: MakeKey) -> None:
    key = make_key("sandbox").secret
    response = Client(router).get(f"/v1/charges?api_key={key}")
    assert problem(response)["code"] == "missing_credentials"


def test_query_string_key_when_configured_is_removed_before_the_backend(
        gateway: EnvRouter, recorder: Recorder) -> None:
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    response = Client(gateway).get(f"/v1/charges?q=a%7Eb+c&api_key={key}&limit=3&api%5Fkey=x")
    assert response.status_code == 200
    assert recorder.calls[0]["QUERY_STRING"] == "q=a%7Eb+c&limit=3"  # the rest byte for byte


def test_backend_sees_identity_and_never_the_credential(gateway: EnvRouter,
                                                        recorder: Recorder) -> None:
    issued = KeyManager(gateway.store, gateway.settings).create(
        "sandbox", metadata={"customer": "acme", "tier": "free"})
    Client(gateway).get("/", headers={"Authorization": f"Bearer {issued.secret}",
                                      "X-API-Key": issued.secret,
                                      "Envroute-Key-Id": "key_forged",
                                      "Envroute-Environment": "production"})
    environ = recorder.calls[0]
    identity = environ["envroute.identity"]
    assert (identity.key_id, identity.environment, identity.source) == (
        issued.record.id, "sandbox", "api_key")
    assert dict(identity.metadata) == {"customer": "acme", "tier": "free"}
    with pytest.raises(TypeError):
        identity.metadata["tier"] = "enterprise"
    assert environ["envroute.backend"] == "sandbox"
    assert not any(k.startswith("HTTP_ENVROUTE_") for k in environ)
    assert issued.secret not in repr(sorted(environ.items()))


def test_request_id_on_every_response_replaces_the_backends(router: EnvRouter,
                                                            make_key: MakeKey) -> None:
    recorder = Recorder()
    gateway = EnvRouter(recorder, replace(router.settings), store=router.store)
    key = KeyManager(router.store, router.settings).create("production").secret
    ok = Client(gateway).get("/", headers={"X-API-Key": key})
    refused = Client(gateway).get("/")
    assert ok.headers["Request-Id"].startswith("req_")
    assert ok.headers.getlist("Request-Id") == [ok.headers["Request-Id"]]
    assert refused.headers["Request-Id"] != ok.headers["Request-Id"]


def insert_record(router: EnvRouter, secret: str, **fields: Any) -> KeyRecord:
    record = KeyRecord(id="key_manual" + secret[-6:], environment=fields.pop("environment"),
                       prefix=secret[: secret.rfind("_") + 1], last4=secret[-4:],
                       created_at=utcnow(), **fields)
    router.store.create(record, hash_key(SECRET.encode(), secret))
    return record


def mistyped(secret: str) -> str:
    """``secret`` with its last character changed: always a different character, so the
    checksum never matches (replacing it with a fixed one kept 1 key in 62 valid)."""
    return secret[:-1] + ("1" if secret[-1] == "0" else "0")


def made_up_key() -> str:
    body = "sk_test_" + "A" * 32
    return body + checksum(body)


REFUSALS: list[Any] = [
    pytest.param(lambda r, k: {}, "missing_credentials", 401, id="no-credential"),
    pytest.param(lambda r, k: {"Authorization": "Bearer "}, "missing_credentials", 401,
                 id="empty-bearer"),
    pytest.param(lambda r, k: {"Authorization": "Basic !!!"}, "invalid_key", 401,
                 id="basic-not-base64"),
    pytest.param(lambda r, k: {"X-API-Key": "hunter2"}, "invalid_key", 401, id="malformed"),
    pytest.param(lambda r, k: {"X-API-Key": mistyped(k("sandbox").secret)}, "invalid_key",
                 401, id="bad-checksum"),
    pytest.param(lambda r, k: {"X-API-Key": made_up_key()}, "invalid_key", 401,
                 id="unknown-key"),
    pytest.param(lambda r, k: {"X-API-Key": generate_secret("sk_eu_")}, "invalid_key", 401,
                 id="unknown-prefix"),
    pytest.param(lambda r, k: {"Authorization": "Bearer a.b.c"}, "invalid_token", 401,
                 id="jwt-not-configured"),
]


@pytest.mark.parametrize(("headers", "code", "status"), REFUSALS)
def test_refusals_are_problems_and_never_reach_a_backend(
        gateway: EnvRouter, recorder: Recorder, headers: Any, code: str, status: int) -> None:
    manager = KeyManager(gateway.store, gateway.settings)
    response = Client(gateway).get("/", headers=headers(gateway, manager.create))
    body = problem(response)
    assert (body["code"], response.status_code) == (code, status)
    assert body["type"].endswith(code)
    assert ("WWW-Authenticate" in response.headers) == (status == 401)
    assert recorder.calls == []


def test_prefix_of_another_environment_is_refused(router: EnvRouter) -> None:
    secret = generate_secret("sk_test_")
    insert_record(router, secret, environment="production")
    response = Client(router).get("/", headers={"X-API-Key": secret})
    assert problem(response)["code"] == "invalid_key"


def test_expired_key(router: EnvRouter) -> None:
    secret = generate_secret("sk_test_")
    insert_record(router, secret, environment="sandbox", expires_at=utcnow())
    body = problem(Client(router).get("/", headers={"X-API-Key": secret}))
    assert body["code"] == "expired_key" and secret not in json.dumps(body)
    assert body["detail"].endswith(f"sk_test_…{secret[-4:]} has expired")


def test_revoked_key_is_refused_within_cache_ttl(base_config: dict[str, Any]) -> None:
    router = EnvRouter(text_app("production"), {**base_config, "auth": {"cache_ttl": "200ms"}},
                       backends={"sandbox": text_app("sandbox")})
    manager = KeyManager(router.store, router.settings)
    issued = manager.create("sandbox")
    client = Client(router)
    assert client.get("/", headers={"X-API-Key": issued.secret}).status_code == 200
    manager.revoke(issued.record.id)
    deadline = time.monotonic() + 2
    while client.get("/", headers={"X-API-Key": issued.secret}).status_code == 200:
        assert time.monotonic() < deadline, "revocation was not honoured within cache_ttl"
        time.sleep(0.05)
    response = client.get("/", headers={"X-API-Key": issued.secret})
    assert problem(response)["code"] == "revoked_key"


def test_verified_keys_are_cached_per_process(router: EnvRouter, make_key: MakeKey) -> None:
    key = make_key("sandbox").secret
    lookups: list[bytes] = []
    original = router.store.lookup

    def counting(key_hash: bytes) -> Any:
        lookups.append(key_hash)
        return original(key_hash)

    router.store.lookup = counting  # type: ignore[method-assign]
    client = Client(router)
    for _ in range(50):
        assert client.get("/", headers={"X-API-Key": key}).status_code == 200
    assert len(lookups) == 1


@pytest.mark.parametrize(("expires_in", "old_works"), [(0, False), (3600, True)])
def test_roll_keeps_the_old_secret_until_its_expiry(router: EnvRouter, make_key: MakeKey,
                                                    expires_in: int, old_works: bool) -> None:
    issued = make_key("sandbox")
    rolled = KeyManager(router.store, router.settings).roll(issued.record.id,
                                                            expires_in=expires_in)
    assert rolled.record.id == issued.record.id and rolled.secret != issued.secret
    router.authenticator.api_keys.invalidate()
    client = Client(router)
    assert client.get("/", headers={"X-API-Key": rolled.secret}).status_code == 200
    old = client.get("/", headers={"X-API-Key": issued.secret})
    assert (old.status_code == 200) == old_works
    if not old_works:
        assert problem(old)["code"] == "expired_key"


def test_no_route_fails_closed(store_url: str) -> None:
    recorder = Recorder()
    router = EnvRouter(recorder, {"secret": SECRET, "store": {"url": store_url},
                                  "routes": [{"when": {"tier": "enterprise"}, "backend": "app"}]})
    key = KeyManager(router.store, router.settings).create("sandbox", metadata={"tier": "free"})
    body = problem(Client(router).get("/", headers={"X-API-Key": key.secret}))
    assert (body["code"], body["status"]) == ("no_route", 403)
    assert recorder.calls == []


@pytest.mark.parametrize("content", [b"not a database at all" * 100, None])
def test_unreadable_store_is_503_and_never_routes(tmp_path: Any, recorder: Recorder,
                                                  content: bytes | None) -> None:
    path = tmp_path / "keys.db"
    if content is None:
        path.mkdir()  # a directory where the database file should be
    else:
        path.write_bytes(content)
    router = EnvRouter(recorder, {"secret": SECRET, "store": {"url": f"sqlite:///{path}"}})
    body = problem(Client(router).get("/", headers={"X-API-Key": generate_secret("sk_test_")}))
    assert (body["code"], body["status"]) == ("store_unavailable", 503)
    assert recorder.calls == []


def test_a_crashing_backend_is_a_problem_not_a_traceback(store_url: str) -> None:
    def broken(environ: Any, start_response: Any) -> list[bytes]:
        raise RuntimeError("database password is hunter2")

    router = EnvRouter(broken, {"secret": SECRET, "store": {"url": store_url}})
    key = KeyManager(router.store, router.settings).create("sandbox").secret
    response = Client(router).get("/", headers={"X-API-Key": key})
    body = problem(response)
    assert body["code"] == "backend_unavailable" and "hunter2" not in response.get_data(True)


def test_head_refusal_has_no_body(router: EnvRouter) -> None:
    response = Client(router).head("/")
    assert response.status_code == 401 and response.get_data() == b""


def test_split_is_sticky_per_key_and_stable_across_processes(store_url: str) -> None:
    config = {"secret": SECRET, "store": {"url": store_url},
              "routes": [{"when": {}, "split": {"blue": 1, "green": 3}}]}
    backends = {"blue": text_app("blue"), "green": text_app("green")}
    first = EnvRouter(None, config, backends=backends)
    second = EnvRouter(None, config, backends=backends)  # as another process would
    manager = KeyManager(first.store, first.settings)
    keys = [manager.create("sandbox").secret for _ in range(40)]
    answers = {}
    for key in keys:
        seen = {Client(r).get("/", headers={"X-API-Key": key}).get_data(True).split()[0]
                for r in (first, second, first)}
        assert len(seen) == 1
        answers[key] = seen.pop()
    assert set(answers.values()) == {"blue", "green"}
    assert list(answers.values()).count("green") > list(answers.values()).count("blue")


def test_first_matching_route_wins_and_lists_match_any(store_url: str) -> None:
    config = {"secret": SECRET, "store": {"url": store_url},
              "routes": [{"when": {"customer": "bank"}, "backend": "isolated"},
                         {"when": {"tier": ["enterprise", "business"]}, "backend": "dedicated"},
                         {"when": {}, "backend": "shared"}]}
    router = EnvRouter(None, config, backends={n: text_app(n) for n in
                                               ("isolated", "dedicated", "shared")})
    manager = KeyManager(router.store, router.settings)
    cases = [({"customer": "bank", "tier": "enterprise"}, "isolated"),
             ({"tier": "business"}, "dedicated"), ({"tier": "free"}, "shared"), ({}, "shared")]
    for metadata, expected in cases:
        key = manager.create("production", metadata=metadata).secret
        body = Client(router).get("/", headers={"X-API-Key": key}).get_data(True)
        assert body.split()[0] == expected, metadata


def test_one_access_log_line_per_request_without_secrets(router: EnvRouter, make_key: MakeKey,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    key = make_key("sandbox").secret
    bad = key[:-1] + ("0" if key[-1] != "0" else "1")
    caplog.set_level(logging.INFO, logger="envroute.access")
    client = Client(router)
    ok = client.get("/v1/charges", headers={"X-API-Key": key})
    ok.close()  # a WSGI server closes the response when it is sent: the line is written then
    client.get("/v1/charges", headers={"X-API-Key": bad})
    lines = [r for r in caplog.records if r.name == "envroute.access"]
    assert len(lines) == 2
    first = lines[0]
    assert first.request_id == ok.headers["Request-Id"]  # type: ignore[attr-defined]
    assert (first.backend, first.status, first.environment) == (  # type: ignore[attr-defined]
        "sandbox", 200, "sandbox")
    assert "GET /v1/charges 200" in first.getMessage()
    assert lines[1].status == 401  # type: ignore[attr-defined]
    text = caplog.text
    assert key not in text and bad not in text and key[8:-4] not in text


# -- PEP 3333's error path and the one error translation ----------------------------------


def strict(app: Any) -> Any:
    """``app`` under wsgiref's validator: it fails on any PEP 3333 breach by the gateway,
    such as a second ``start_response`` without ``exc_info``."""
    return validator(app)


@pytest.mark.parametrize("name", BEFORE_BODY)
def test_a_backend_that_breaks_before_its_body_is_502(store_url: str, name: str) -> None:
    router = EnvRouter(getattr(broken_apps, name), {"secret": SECRET,
                                                    "store": {"url": store_url}})
    key = router.keys.create("sandbox").secret
    response = Client(strict(router)).get("/", headers={"X-API-Key": key})
    body = problem(response)
    assert (response.status_code, body["code"]) == (502, "backend_unavailable")
    assert "hunter2" not in response.get_data(True)
    response.close()
    router.close()


def test_headers_given_as_an_iterator_all_reach_the_caller(store_url: str) -> None:
    """PEP 3333 asks for a list; a generator that also holds a header name never seen
    before (the slow check) must still lose none of them."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", (h for h in [("X-First", "1"), ("X-Never-Seen-Yet", "2"),
                                              ("X-Last", "3")]))
        return [b"ok"]

    router = EnvRouter(app, {"secret": SECRET, "store": {"url": store_url}})
    key = router.keys.create("sandbox").secret
    response = Client(router).get("/", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert [(k, v) for k, v in response.headers.items() if k.startswith("X-")] == [
        ("X-First", "1"), ("X-Never-Seen-Yet", "2"), ("X-Last", "3")]
    router.close()


@pytest.mark.parametrize(("given", "key"), [
    pytest.param({"app": 5}, "app", id="app"),
    pytest.param({"backends": {"sandbox": "not an app"}}, "backends.sandbox", id="backend"),
])
def test_something_not_callable_as_a_backend_stops_construction(
        store_url: str, given: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: .* is not a WSGI application"):
        EnvRouter(given.get("app"), {"secret": SECRET, "store": {"url": store_url}},
                  backends=given.get("backends"))


def test_a_backend_that_breaks_after_bytes_were_sent_is_cut_off(store_url: str) -> None:
    router = EnvRouter(broken_apps.breaks_midstream,
                       {"secret": SECRET, "store": {"url": store_url}})
    key = router.keys.create("sandbox").secret
    with pytest.raises(RuntimeError, match="after bytes were sent"):  # the server closes
        Client(router).get("/", headers={"X-API-Key": key}).get_data()
    router.close()


def test_the_legacy_write_callable_is_passed_through(store_url: str) -> None:
    router = EnvRouter(broken_apps.legacy_write, {"secret": SECRET,
                                                  "store": {"url": store_url}})
    key = router.keys.create("sandbox").secret
    response = Client(strict(router)).get("/", headers={"X-API-Key": key})
    assert response.get_data() == b"written then returned"
    response.close()
    router.close()


def raising(exc: BaseException) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        raise exc

    return app


@pytest.mark.parametrize(("exc", "status", "code"), [
    pytest.param(BadRequestBody("chunk size"), 400, "invalid_request", id="bad-body"),
    pytest.param(EnvironmentMismatch("fence"), 403, "environment_mismatch", id="fence"),
    pytest.param(StoreUnavailable("down"), 503, "store_unavailable", id="store"),
    pytest.param(BackendTimeout("slow"), 504, "backend_timeout", id="timeout"),
    pytest.param(BackendUnavailable("refused"), 502, "backend_unavailable", id="refused"),
    pytest.param(ValueError("a bug"), 502, "backend_unavailable", id="anything-else"),
])
def test_one_translation_of_errors_into_problems(store_url: str, exc: Exception, status: int,
                                                 code: str) -> None:
    router = EnvRouter(raising(exc), {"secret": SECRET, "store": {"url": store_url}})
    key = router.keys.create("sandbox").secret
    response = Client(strict(router)).get("/", headers={"X-API-Key": key})
    assert (response.status_code, problem(response)["code"]) == (status, code)
    response.close()
    router.close()
