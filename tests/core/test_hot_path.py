"""A key's later requests take the request path's shortcut (a cached key, issue 14): nothing
a caller or a backend notices may differ from its first request, which went the whole way."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter, KeyManager
from envroute import auth as auth_module
from envroute import gateway as gateway_module
from envroute.handler import new_request_id
from tests.support.apps import SECRET, text_app

#: what differs between two requests whatever path they take
VOLATILE = {"envroute.request_id", "envroute.exchange", "wsgi.input", "wsgi.errors",
            "werkzeug.request"}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls.append({k: v for k, v in environ.items() if k not in VOLATILE})
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Seen", "yes")])
        return [b"recorded"]


def gateway(store_url: str, backend: Any, **config: Any) -> EnvRouter:
    return EnvRouter(backend, {"secret": SECRET, "store": {"url": store_url},
                               "auth": {"cache_ttl": "1h"}, **config})


@pytest.mark.parametrize("auth", [{}, {"query_param": "api_key"}], ids=["plain", "query-param"])
def test_a_cached_key_is_served_exactly_like_a_new_one(store_url: str, auth: dict[str, Any]
                                                       ) -> None:
    recorder = Recorder()
    router = gateway(store_url, recorder, auth={"cache_ttl": "1h", **auth})
    key = KeyManager(router.store, router.settings).create("sandbox").secret
    query = f"?api_key={key}&limit=3" if auth else "?limit=3"
    headers = {"Authorization": f"Bearer {key}", "X-API-Key": key,
               "Referer": f"https://shop.example/checkout?api_key={key}",
               "Envroute-Key-Id": "key_forged", "Envroute-Customer-Id": "cus_forged"}
    answers = [Client(router).get(f"/v1/charges{query}", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    first, *later = recorder.calls
    assert all(call == first for call in later)  # the backend saw the same environ
    assert not any(key in repr(value) for value in first.values())
    assert "HTTP_AUTHORIZATION" not in first and "HTTP_X_API_KEY" not in first
    assert not any(name.startswith("HTTP_ENVROUTE_") for name in first)
    assert first["QUERY_STRING"] == "limit=3"
    heads = [sorted((k, v) for k, v in a.headers.items() if k != "Request-Id") for a in answers]
    assert heads[0] == heads[1] == heads[2]
    assert len({a.headers["Request-Id"] for a in answers}) == 3
    router.close()


def test_a_restricted_key_is_checked_on_every_request(store_url: str) -> None:
    router = gateway(store_url, text_app("app"),
                     scopes={"charges:read": ["GET /v1/charges"]})
    key = KeyManager(router.store, router.settings).create(
        "sandbox", scopes=["charges:read"]).secret
    client = Client(router)
    auth = {"Authorization": f"Bearer {key}"}
    statuses = [client.get("/v1/charges", headers=auth).status_code,
                client.post("/v1/charges", headers=auth).status_code,
                client.get("/v1/charges", headers=auth).status_code,
                client.get("/v1/customers", headers=auth).status_code]
    assert statuses == [200, 403, 200, 403]
    router.close()


def test_routes_with_request_conditions_are_decided_per_request(store_url: str) -> None:
    router = EnvRouter(None, {
        "secret": SECRET, "store": {"url": store_url},
        "routes": [{"when": {}, "request": {"path": "/v2/**"}, "backend": "v2"},
                   {"when": {}, "backend": "v1"}],
    }, backends={"v1": text_app("v1"), "v2": text_app("v2")})
    key = KeyManager(router.store, router.settings).create("sandbox")
    client = Client(router)
    auth = {"Authorization": f"Bearer {key.secret}"}
    bodies = [client.get(path, headers=auth).get_data(as_text=True).split()[0]
              for path in ("/v2/charges", "/v1/charges", "/v2/charges", "/v1/charges")]
    assert bodies == ["v2", "v1", "v2", "v1"]
    router.close()


def test_a_cached_key_that_expires_is_refused(store_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    router = gateway(store_url, text_app("app"))
    key = KeyManager(router.store, router.settings).create("sandbox", expires_in=3600).secret
    client = Client(router)
    auth = {"Authorization": f"Bearer {key}"}
    assert [client.get("/", headers=auth).status_code for _ in range(2)] == [200, 200]

    class TwoHoursLater:  # the wall clock, past the key's expiry
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def time() -> float:
            return time.time() + 7200

    monkeypatch.setattr(auth_module, "time", TwoHoursLater)  # the verifier's
    monkeypatch.setattr(gateway_module, "time", TwoHoursLater.time)  # the shortcut's
    answer = client.get("/", headers=auth)
    assert answer.status_code == 401
    assert answer.json is not None and answer.json["code"] == "expired_key"
    router.close()


def test_a_key_revoked_here_is_refused_at_once_though_cached(store_url: str) -> None:
    router = gateway(store_url, text_app("app"))
    issued = router.keys.create("sandbox")
    auth = {"Authorization": f"Bearer {issued.secret}"}
    assert [Client(router).get("/", headers=auth).status_code for _ in range(2)] == [200, 200]
    router.keys.revoke(issued.record.id)
    answer = Client(router).get("/", headers=auth)
    assert answer.status_code == 401 and answer.json is not None
    assert answer.json["code"] == "revoked_key"
    router.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_request_ids_are_unique_and_a_forked_worker_draws_its_own() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker would hand out
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"req_[0-9a-f]{24}", child)
    assert child[:16] != ids[-1][:16]  # another prefix: workers never share a sequence


def test_the_caches_hold_no_key_and_name_keys_differently_in_each_process(store_url: str
                                                                         ) -> None:
    from envroute.keys import CacheToken, generate_secret

    router = gateway(store_url, text_app("app"))
    key = KeyManager(router.store, router.settings).create("sandbox").secret
    unknown = generate_secret("sk_test_")  # a key nobody issued, its checksum right
    client = Client(router)
    assert [client.get("/", headers={"Authorization": f"Bearer {key}"}).status_code
            for _ in range(2)] == [200, 200]
    assert client.get("/", headers={"Authorization": f"Bearer {unknown}"}).status_code == 401
    verifier = router.authenticator.api_keys
    held = repr([*verifier.verified.entries.items(), *verifier.refused.entries.items()])
    assert len(verifier.verified.entries) == 1 and len(verifier.refused.entries) == 1
    assert key not in held and key[8:] not in held and unknown[8:] not in held
    # the name is keyed per process (a salt drawn at start): not a function of the key alone
    assert CacheToken()(key) != CacheToken()(key)
    assert verifier.token(key) in verifier.verified.entries
    router.close()
