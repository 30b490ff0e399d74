"""Unit tests of how the proxy builds the upstream request: URL, path, headers, Location.

Pure functions on WSGI environs, and the real echoing upstream process where a whole
request is built (the proxy sends through urllib3's pool, below what ``responses``
intercepts).
"""

from __future__ import annotations

import os
import warnings
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.test import EnvironBuilder

from envroute import ConfigError, Identity, verify_signature
from envroute.proxy import DEFAULT_POOL_SIZE, ProxyBackend, upstream_path, upstream_query
from envroute.proxy import pool as pool_module
from envroute.settings import BackendSettings
from tests.proxy.conftest import Upstream, echoed, header_map


def environ(path_info: str, raw: str | None = None, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path_info,
                           "QUERY_STRING": "", "wsgi.url_scheme": "http",
                           "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "gateway.test"}
    if raw is not None:
        env["RAW_URI"] = raw
    env.update(extra)
    return env


@pytest.mark.parametrize(("env", "strip_prefix", "expected"), [
    pytest.param(environ("/v1/charges", "/v1/charges"), "", "/v1/charges", id="plain"),
    pytest.param(environ("/files/a/b", "/files/a%2Fb"), "", "/files/a%2Fb",
                 id="encoded-slash-kept"),
    pytest.param(environ("/a b/\xc3\xbc"), "", "/a%20b/%C3%BC", id="re-quoted-without-raw"),
    pytest.param(environ("/a/b", REQUEST_URI="/a%2Fb?x=1"), "", "/a%2Fb",
                 id="request-uri"),
    pytest.param(environ("/x", "http://evil.example/x"), "", "/x", id="absolute-form"),
    pytest.param(environ("//evil.example/x", "//evil.example/x"), "", "//evil.example/x",
                 id="double-slash-is-a-path"),
    pytest.param(environ("///evil.example/x", "/%2F%2Fevil.example/x"), "",
                 "/%2F%2Fevil.example/x", id="encoded-double-slash"),
    pytest.param(environ("/@evil.example", "/@evil.example"), "", "/@evil.example",
                 id="at-sign"),
    pytest.param(environ("/\\evil.example", "/\\evil.example"), "", "/%5Cevil.example",
                 id="backslash-escaped"),
    pytest.param(environ("/a?b#c"), "", "/a%3Fb%23c", id="question-and-hash-escaped"),
    pytest.param(environ("/a%zz", "/a%zz"), "", "/a%25zz", id="malformed-escape"),
    pytest.param(environ("/new", "/old"), "", "/new", id="rewritten-path-info-wins"),
    pytest.param(environ("/sandbox/v1/x", "/sandbox/v1/x"), "/sandbox", "/v1/x",
                 id="strip-prefix"),
    pytest.param(environ("/sandbox", "/sandbox"), "/sandbox", "", id="strip-whole-path"),
    pytest.param(environ("/sandboxes/x", "/sandboxes/x"), "/sandbox", "/sandboxes/x",
                 id="prefix-not-at-a-segment-boundary"),
    pytest.param(environ("/sandbox/a/b", "/sand%62ox/a%2Fb"), "/sandbox", "/a%2Fb",
                 id="strip-encoded-prefix"),
    pytest.param(environ("/v1/a/b", "/api/v1/a%2Fb", SCRIPT_NAME="/api"), "", "/v1/a%2Fb",
                 id="script-name"),
])
def test_upstream_path(env: dict[str, Any], strip_prefix: str, expected: str) -> None:
    assert upstream_path(env, strip_prefix) == expected


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("a=1&b=%2F&c", "a=1&b=%2F&c", id="kept-as-sent"),
    pytest.param("q=a b&r=#", "q=a%20b&r=%23", id="unsafe-escaped"),
    pytest.param("next=/x?y=1", "next=/x?y=1", id="slash-and-question-mark-allowed"),
])
def test_upstream_query(query: str, expected: str) -> None:
    assert upstream_query(environ("/", QUERY_STRING=query)) == expected


def backend(url: str = "http://127.0.0.1:9000/base", strip_prefix: str = "/sandbox",
            **kwargs: Any) -> ProxyBackend:
    return ProxyBackend(BackendSettings(name="sb", url=url, strip_prefix=strip_prefix,
                                        **kwargs), signing_secret="s3cret")


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param("/sandbox/v1/x?a=1", "http://127.0.0.1:9000/base/v1/x?a=1", id="prefixed"),
    pytest.param("/sandbox", "http://127.0.0.1:9000/base", id="prefix-only"),
    pytest.param("//evil.example/x", "http://127.0.0.1:9000/base//evil.example/x",
                 id="double-slash"),
    pytest.param("http://evil.example/sandbox/x", "http://127.0.0.1:9000/base/x",
                 id="absolute-form"),
    pytest.param("/sandbox/@evil.example", "http://127.0.0.1:9000/base/@evil.example",
                 id="at-sign"),
])
def test_the_target_is_always_the_configured_backend(raw: str, expected: str) -> None:
    path, _, query = raw.partition("?")
    path_info = urlsplit(path).path if "://" in path else path
    env = environ(path_info, raw, QUERY_STRING=query, HTTP_HOST="evil.example",
                  HTTP_X_FORWARDED_HOST="evil.example")
    url = backend().url_for(env)
    assert url == expected
    assert urlsplit(url).netloc == "127.0.0.1:9000"


def test_a_backend_url_with_no_path_sends_slash() -> None:
    assert backend("http://h:1", "").url_for(environ("")) == "http://h:1/"


@pytest.mark.parametrize(("url", "reason"), [
    pytest.param("ftp://h/", "not an http", id="scheme"),
    pytest.param("http:///x", "not an http", id="no-host"),
    pytest.param("http://user:pw@h/", "credentials", id="credentials"),
    pytest.param("http://h/?a=1", "no query", id="query"),
    pytest.param("http://h:port/", "invalid port", id="port"),
])
def test_bad_backend_urls_stop_start_up(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        backend(url)
    assert info.value.key == "backends.sb.url"
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(("location", "expected"), [
    pytest.param("http://127.0.0.1:9000/base/login?next=1", "/sandbox/login?next=1",
                 id="absolute-into-backend"),
    pytest.param("http://127.0.0.1:9000/base", "/sandbox", id="backend-root"),
    pytest.param("HTTP://127.0.0.1:9000/base/x#frag", "/sandbox/x#frag", id="scheme-case"),
    pytest.param("//127.0.0.1:9000/base/x", "/sandbox/x", id="scheme-relative"),
    pytest.param("/base/login", "/sandbox/login", id="path-under-base"),
    pytest.param("http://127.0.0.1:9000/elsewhere", "/elsewhere", id="backend-host-no-base"),
    pytest.param("http://127.0.0.1:9000//evil.example/", "/evil.example/",
                 id="never-a-network-path"),
    pytest.param("/other", "/other", id="path-outside-base"),
    pytest.param("https://example.com/x", "https://example.com/x", id="external"),
    # the backend's host under another scheme (it was told X-Forwarded-Proto: https) or
    # port still names the backend (contract §7): a path on the gateway too
    pytest.param("http://127.0.0.1:9001/base/x", "/sandbox/x", id="other-port"),
    pytest.param("https://127.0.0.1:9000/base/x", "/sandbox/x", id="other-scheme"),
    pytest.param("https://127.0.0.1/base/x?y=1", "/sandbox/x?y=1", id="other-default-port"),
    pytest.param("http://127.0.0.2:9000/base/x", "http://127.0.0.2:9000/base/x",
                 id="another-host"),
    pytest.param("next", "next", id="relative-path"),
    pytest.param("http://[::1", "http://[::1", id="unparseable"),
])
def test_location_rewriting(location: str, expected: str) -> None:
    assert backend().rewrite_location(location, environ("/")) == expected


def test_location_without_a_base_path_or_prefix() -> None:
    plain = backend("http://127.0.0.1:9000", "")
    assert plain.rewrite_location("http://127.0.0.1:9000/x?y", environ("/")) == "/x?y"
    assert plain.rewrite_location("http://127.0.0.1:9000//evil.example", environ("/")) \
        == "/evil.example"
    assert plain.rewrite_location("https://127.0.0.1/x", environ("/")) == "/x"
    assert plain.rewrite_location("http://localhost/x", environ("/")) == "http://localhost/x"


def sent_to(upstream: Upstream, proxy: ProxyBackend, env: dict[str, Any],
            started: list[Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Send ``env`` through ``proxy`` to the real echoing upstream: (body, the echo)."""
    def start(status: str, headers: list[tuple[str, str]]) -> None:
        if started is not None:
            started.append((status, headers))
    body = b"".join(proxy(env, start))  # type: ignore[arg-type]
    return body, echoed(body)


def test_the_request_sent_upstream(primary: Upstream) -> None:
    env = EnvironBuilder(
        path="/sandbox/v1/charges", method="POST", data=b"amount=100",
        query_string="expand=customer", content_type="application/x-www-form-urlencoded",
        headers={"Connection": "keep-alive, X-Private", "X-Private": "p", "TE": "trailers",
                 "Keep-Alive": "300", "Envroute-Key-Id": "forged", "X-Trace": "t1",
                 "X-Forwarded-For": "203.0.113.7", "Proxy-Authorization": "Basic eA==",
                 "X-Upstream-Do": "status:201"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    ).get_environ()
    env["envroute.identity"] = Identity("key_1", "sandbox", {"tier": "pro"})
    env["envroute.request_id"] = "req_1"
    started: list[Any] = []
    proxy = backend(f"http://127.0.0.1:{primary.port}/base")
    _, echo = sent_to(primary, proxy, env, started)
    proxy.close()
    assert started[0][0] == "201 Created"
    assert "server" not in {name.lower() for name, _ in started[0][1]}
    assert echo["target"] == "/base/v1/charges?expand=customer"
    assert echo["body"] == "amount=100"
    received = header_map(echo)
    headers = {name: values[0] for name, values in received.items()}
    assert all(len(values) == 1 for values in received.values()), received
    assert headers["content-length"] == "10"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["x-trace"] == "t1"
    assert headers["host"] == f"127.0.0.1:{primary.port}"
    for dropped in ("connection", "x-private", "te", "keep-alive", "proxy-authorization",
                    "user-agent", "accept-encoding", "transfer-encoding"):
        assert dropped not in headers
    assert headers["envroute-key-id"] == "key_1"
    assert headers["envroute-metadata"] == '{"tier":"pro"}'
    assert headers["envroute-request-id"] == "req_1"
    assert verify_signature(headers, "s3cret")
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "localhost"


def test_no_identity_headers_without_an_identity_and_no_signature_without_a_secret(
        primary: Upstream) -> None:
    plain = ProxyBackend(BackendSettings(name="p", url=primary.url))
    env = EnvironBuilder(path="/x").get_environ()
    _, first = sent_to(primary, plain, dict(env))
    env["envroute.identity"] = Identity("key_1", "sandbox")
    _, second = sent_to(primary, plain, env)
    plain.close()
    assert not [name for name in header_map(first) if name.startswith("envroute-")]
    assert header_map(second)["envroute-key-id"] == ["key_1"]
    assert "envroute-signature" not in header_map(second)


@pytest.mark.parametrize(("pool_size", "expected"), [
    pytest.param(0, DEFAULT_POOL_SIZE, id="default"),
    pytest.param(5, 5, id="configured"),
])
def test_one_pool_per_process_sized_from_pool_size(pool_size: int, expected: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = backend(pool_size=pool_size)
    first = proxy.pool.adapter()
    assert proxy.pool.adapter() is first  # reused across requests
    assert proxy.pool_size == expected
    assert first.poolmanager.connection_pool_kw["maxsize"] == expected
    monkeypatch.setattr("envroute.proxy.pool._forks", pool_module._forks + 1)  # as in a fork
    forked = proxy.pool.adapter()
    assert forked is not first
    assert proxy.pool.adapter() is forked
    proxy.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_process_builds_its_own_pool() -> None:
    proxy = backend(pool_size=2)
    parent = proxy.pool.connections()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: a new pool, the parent's never touched
        os._exit(0 if proxy.pool.connections() is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert proxy.pool.connections() is parent
    proxy.close()


@pytest.mark.parametrize("customer_id", [None, "acme"])
def test_the_customer_is_sent_and_signed(primary: Upstream, customer_id: str | None) -> None:
    proxy = ProxyBackend(BackendSettings(name="p", url=primary.url), signing_secret="s3cret")
    env = EnvironBuilder(path="/x", headers={"Envroute-Customer-Id": "forged"}).get_environ()
    env["envroute.identity"] = Identity("jane.doe@example.com", "sandbox", {"tier": "pro"},
                                        customer_id=customer_id)
    _, echo = sent_to(primary, proxy, env)
    proxy.close()
    received = header_map(echo)
    assert received.get("envroute-customer-id") == ([customer_id] if customer_id else None)
    assert verify_signature([tuple(pair) for pair in echo["headers"]], "s3cret")


@pytest.mark.parametrize(("url", "raw", "path_info", "query"), [
    pytest.param("http://h/base", "/v1/charges/ch_1?expand=a&b=c", "/v1/charges/ch_1",
                 "expand=a&b=c", id="usual"),
    pytest.param("http://h", "/v1/x?", "/v1/x", "", id="empty-query"),
    pytest.param("http://h", "/v1/x?a=1?b=/c", "/v1/x", "a=1?b=/c", id="query-with-?-and-/"),
    pytest.param("http://h", "/v1/x?key=k&a=1", "/v1/x", "a=1", id="credential-removed"),
    pytest.param("http://h", "/v1/x", "/v1/y", "", id="path-rewritten"),
    pytest.param("http://h", "/v1/a%2Fb", "/v1/a/b", "", id="escape"),
    pytest.param("http://h", "/v1/a%2fb", "/v1/a/b", "", id="lower-escape"),
    pytest.param("http://h", "/v1/a b#c", "/v1/a b#c", "", id="space-and-hash"),
    pytest.param("http://h", "/v1/a\\b", "/v1/a\\b", "", id="backslash"),
    pytest.param("http://h", "/v1/caf\xe9", "/v1/caf\xe9", "", id="not-ascii"),
    pytest.param("http://h", "//evil/x", "//evil/x", "", id="double-slash"),
    pytest.param("http://h", "http://evil/x", "/x", "", id="absolute-form"),
    pytest.param("http://h/b%4ase", "/v1/x", "/v1/x", "", id="escape-in-base"),
])
def test_the_usual_target_is_what_the_general_way_sends(url: str, raw: str, path_info: str,
                                               query: str) -> None:
    # target_for takes a shortcut for the usual request; it must send what the general
    # way (one path for every request) sends
    env = environ(path_info, raw, QUERY_STRING=query)
    usual = ProxyBackend(BackendSettings(name="u", url=url)).upstream
    general = ProxyBackend(BackendSettings(name="g", url=url)).upstream
    general._plain = False  # never the shortcut
    assert usual.target_for(env) == general.target_for(env)
    assert usual.target_for({**env, "SCRIPT_NAME": "/mount"}) == general.target_for(
        {**env, "SCRIPT_NAME": "/mount"})
