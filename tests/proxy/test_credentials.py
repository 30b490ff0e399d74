"""The credential reaches no backend in any form (contract §4, §6): not in the headers,
the query string, the raw request URI the server provides, nor a ``Referer`` repeating it.
Both an in-process backend and a proxied upstream are checked, in-process and under a
real gunicorn (which sets ``RAW_URI`` from the request line)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from werkzeug.test import Client

from envroute import EnvRouter, KeyManager
from tests.proxy.conftest import Upstream, echoed, header_map, logged
from tests.support.apps import SECRET
from tests.support.processes import free_port, gunicorn_command

ROOT = Path(__file__).resolve().parents[2]


def settings(db: Path, upstream: int) -> dict[str, Any]:
    return {
        "secret": SECRET,
        "store": {"url": f"sqlite:///{db}"},
        "auth": {"query_param": "api_key"},
        "backends": {"local": {"app": "tests.proxy.environ_app:app"},
                     "remote": {"url": f"http://127.0.0.1:{upstream}"}},
        "routes": [{"when": {"where": "local"}, "backend": "local"},
                   {"when": {"where": "remote"}, "backend": "remote"}],
    }


def toml(data: dict[str, Any]) -> str:
    return f"""secret = "{data['secret']}"
[store]
url = "{data['store']['url']}"
[auth]
query_param = "api_key"
[backends.local]
app = "tests.proxy.environ_app:app"
[backends.remote]
url = "{data['backends']['remote']['url']}"
[[routes]]
when = {{where = "local"}}
backend = "local"
[[routes]]
when = {{where = "remote"}}
backend = "remote"
"""


@pytest.fixture
def router(tmp_path: Path, primary: Upstream) -> Iterator[EnvRouter]:
    gateway = EnvRouter(None, settings(tmp_path / "k.db", primary.port))
    yield gateway
    for backend in gateway.backends.values():
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    gateway.store.close()


def keys_for(gateway: EnvRouter) -> dict[str, str]:
    manager = KeyManager(gateway.store, gateway.settings)
    return {where: manager.create("sandbox", metadata={"where": where}).secret
            for where in ("local", "remote")}


#: (query string before the key, after it, Referer template, the Referer a backend sees)
CASES = [
    pytest.param("", "", "", None, id="key-alone"),
    pytest.param("a=1&", "&b=2", "", None, id="key-between-parameters"),
    pytest.param("a=1&", "", "https://shop.example/cart?api_key={key}&x=1",
                 "https://shop.example/cart?x=1", id="referer-repeats-the-query"),
    pytest.param("", "", "https://shop.example/{key}/page", None,
                 id="referer-path-holds-it"),
    pytest.param("", "", "https://shop.example/p?api%5Fkey={quoted}",
                 "https://shop.example/p", id="referer-encoded-name"),
    pytest.param("", "", "https://shop.example/p?next=%2F{quoted}", None,
                 id="referer-encoded-value"),
]


def leaks(found: str, key: str) -> bool:
    from urllib.parse import unquote_plus
    return key in found or key in unquote_plus(found) or quote(key) in found


@pytest.mark.parametrize(("before", "after", "referer", "kept_referer"), CASES)
def test_in_process_and_proxied_backends_never_see_the_query_key(
        router: EnvRouter, before: str, after: str, referer: str,
        kept_referer: str | None) -> None:
    keys = keys_for(router)
    client = Client(router)
    for where, key in keys.items():
        query = f"{before}api_key={key}{after}"
        headers = {"Referer": referer.format(key=key, quoted=quote(key))} if referer else {}
        response = client.get(f"/v1/charges?{query}", headers=headers, environ_overrides={
            "RAW_URI": f"/v1/charges?{query}", "REQUEST_URI": f"/v1/charges?{query}"})
        assert response.status_code == 200, response.data
        text = response.get_data(as_text=True)
        assert not leaks(text, key), (where, text)
        if where == "local":
            seen = json.loads(text)
            expected_query = "&".join(p for p in (before.rstrip("&"), after.lstrip("&")) if p)
            assert seen["QUERY_STRING"] == expected_query
            expected_uri = "/v1/charges" + (f"?{expected_query}" if expected_query else "")
            assert (seen["RAW_URI"], seen["REQUEST_URI"]) == (expected_uri, expected_uri)
            assert seen.get("HTTP_REFERER") == kept_referer
        else:
            received = header_map(echoed(response.data))
            assert "referer" not in received or not leaks(received["referer"][0], key)


def test_a_bearer_key_also_clears_a_query_parameter_and_referer(router: EnvRouter) -> None:
    keys = keys_for(router)
    response = Client(router).get(
        f"/x?api_key={keys['remote']}", headers={"Authorization": f"Bearer {keys['local']}",
                                                 "Referer": f"https://a.example/?t={keys['local']}"},
        environ_overrides={"RAW_URI": f"/x?api_key={keys['remote']}"})
    seen = json.loads(response.data)
    assert seen["QUERY_STRING"] == "" and seen["RAW_URI"] == "/x"
    assert "HTTP_REFERER" not in seen and "HTTP_AUTHORIZATION" not in seen


@pytest.mark.parametrize("where", ["local", "remote"])
def test_under_gunicorn_the_raw_uri_is_clean(tmp_path: Path, primary: Upstream,
                                             where: str) -> None:
    data = settings(tmp_path / "k.db", primary.port)
    config = tmp_path / "envroute.toml"
    config.write_text(toml(data))
    gateway = EnvRouter(None, data)
    try:
        key = keys_for(gateway)[where]
    finally:
        gateway.store.close()
    port = free_port()
    command = gunicorn_command("envroute.wsgi:app", port, workers=1)
    env = {"ENVROUTE_CONFIG": str(config), "PYTHONPATH": str(ROOT) + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    with logged(command, port=port, log=tmp_path / "g.log", env=env, cwd=ROOT):
        response = requests.get(
            f"http://127.0.0.1:{port}/v1/x?a=1&api_key={key}&b=2", timeout=10,
            headers={"Referer": f"https://shop.example/cart?api_key={key}"})
    assert response.status_code == 200, response.text
    assert not leaks(response.text, key)
    if where == "local":
        seen = response.json()
        assert seen["RAW_URI"] == "/v1/x?a=1&b=2" and seen["QUERY_STRING"] == "a=1&b=2"
        assert seen["HTTP_REFERER"] == "https://shop.example/cart"
    else:
        echo = echoed(response.content)
        assert echo["target"] == "/v1/x?a=1&b=2"
        assert header_map(echo)["referer"] == ["https://shop.example/cart"]


@pytest.mark.parametrize("sent", [
    pytest.param({"headers": {"X-API-Key": "{key}"}}, id="api-key-header"),
    pytest.param({"query_string": "api_key={key}"}, id="query-parameter"),
])
@pytest.mark.parametrize("authorization", ["Token {key}", "Digest username={key}"])
def test_the_key_in_an_authorization_header_of_another_scheme_is_removed_too(
        router: EnvRouter, sent: dict[str, Any], authorization: str) -> None:
    """A client that sends the key in the API key header (or the query) and also as
    ``Authorization: Token <key>``, a scheme the gateway does not read: the key is still the
    credential, and neither backend may receive it."""
    for where, key in keys_for(router).items():
        request = {name: ({k: v.format(key=key) for k, v in value.items()}
                          if isinstance(value, dict) else value.format(key=key))
                   for name, value in sent.items()}
        request.setdefault("headers", {})["Authorization"] = authorization.format(key=key)
        response = Client(router).get("/v1/charges", **request)
        assert response.status_code == 200, response.data
        assert not leaks(response.get_data(as_text=True), key), where


def test_an_authorization_header_without_the_key_still_reaches_the_backend(
        router: EnvRouter) -> None:
    key = keys_for(router)["local"]
    response = Client(router).get("/v1/charges", headers={
        "X-API-Key": key, "Authorization": "Token upstream-session"})
    assert json.loads(response.data)["HTTP_AUTHORIZATION"] == "Token upstream-session"
