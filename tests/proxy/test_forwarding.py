"""What crosses the proxy, both ways: the gateway in-process, a real upstream process."""

from __future__ import annotations

import hashlib

import pytest
from werkzeug.http import parse_list_header
from werkzeug.test import Client

from envroute import verify_signature
from envroute.proxy.headers import _connection_tokens
from tests.proxy.conftest import SIGNING_SECRET, Upstream, auth, echoed, header_map
from tests.proxy.upstream import GZIP_BODY, PATTERN


@pytest.mark.parametrize(("method", "body"), [
    pytest.param("GET", b"", id="GET"),
    pytest.param("POST", b"amount=100&currency=eur", id="POST"),
    pytest.param("PUT", b'{"name": "x"}', id="PUT"),
    pytest.param("PATCH", bytes(range(256)) * 3, id="PATCH-binary"),
    pytest.param("DELETE", b"", id="DELETE"),
    pytest.param("OPTIONS", b"", id="OPTIONS"),
    pytest.param("PROPFIND", b"<propfind/>", id="extension-method"),
])
def test_method_path_query_and_body_arrive_as_sent(
        client: Client, keys: dict[str, str], primary: Upstream, method: str,
        body: bytes) -> None:
    target = "/v1/charges/ch_1/a%2Fb%20c?b=2&a=%2F&a=3&empty&x=caf%C3%A9"
    response = client.open(target, method=method, data=body, headers=auth(keys["echo"]))
    assert response.status_code == 200
    echo = echoed(response.data)
    assert (echo["method"], echo["target"]) == (method, target)
    assert echo["body"].encode("latin-1") == body
    received = header_map(echo)
    assert received.get("content-length") == ([str(len(body))] if body else None)


def test_strip_prefix_and_the_backend_path_combine(client: Client, keys: dict[str, str],
                                                   primary: Upstream) -> None:
    response = client.get("/sandbox/v1/x?y=1", headers=auth(keys["based"]))
    assert echoed(response.data)["target"] == "/base/v1/x?y=1"
    response = client.get("/v1/x", headers=auth(keys["based"]))
    assert echoed(response.data)["target"] == "/base/v1/x"


def test_the_backend_learns_who_is_calling_and_can_verify_it(
        client: Client, keys: dict[str, str], primary: Upstream) -> None:
    response = client.get("/v1/me", headers=auth(
        keys["echo"], **{"Envroute-Key-Id": "key_forged", "Envroute-Environment": "production",
                         "Envroute-Signature": "t=1,v1=00"}))
    received = header_map(echoed(response.data))
    assert received["envroute-environment"] == ["sandbox"]
    assert received["envroute-key-id"][0].startswith("key_")
    assert received["envroute-key-id"] != ["key_forged"]
    assert received["envroute-metadata"] == ['{"customer":"cus_1","route":"echo"}']
    assert received["envroute-request-id"] == [response.headers["Request-Id"]]
    flat = {name: values[0] for name, values in received.items()}
    assert verify_signature(flat, SIGNING_SECRET)
    assert not verify_signature(flat, "another-secret")


@pytest.mark.parametrize("credential", [
    pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="bearer"),
    pytest.param(lambda key: {"X-API-Key": key}, id="api-key-header"),
])
def test_the_credential_never_reaches_the_backend(client: Client, keys: dict[str, str],
                                                  primary: Upstream, credential: object) -> None:
    key = keys["echo"]
    response = client.get("/v1/x", headers=credential(key))  # type: ignore[operator]
    assert response.status_code == 200
    assert key not in response.get_data(as_text=True)
    received = header_map(echoed(response.data))
    assert "authorization" not in received and "x-api-key" not in received


def test_forwarding_and_hop_by_hop_request_headers(client: Client, keys: dict[str, str],
                                                   primary: Upstream) -> None:
    response = client.get("/v1/x", headers=auth(
        keys["echo"], **{"Connection": "keep-alive, X-Private", "X-Private": "p",
                         "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c",
                         "Proxy-Authorization": "Basic eDp5", "X-Forwarded-For": "203.0.113.9",
                         "X-Forwarded-Host": "outer.example", "X-Custom": "kept",
                         "Host": "api.example"}),
        environ_base={"REMOTE_ADDR": "192.0.2.1"})
    received = header_map(echoed(response.data))
    for name in ("connection", "x-private", "keep-alive", "te", "upgrade",
                 "proxy-authorization"):
        assert name not in received, name
    assert received["x-custom"] == ["kept"]
    assert received["x-forwarded-for"] == ["203.0.113.9, 192.0.2.1"]
    assert received["x-forwarded-host"] == ["outer.example, api.example"]
    assert received["x-forwarded-proto"] == ["http"]
    assert received["host"] == [f"127.0.0.1:{primary.port}"]
    assert "user-agent" not in received  # none added when the caller sent none
    response = client.get("/", headers=auth(keys["echo"], **{"User-Agent": "curl/8"}))
    assert header_map(echoed(response.data))["user-agent"] == ["curl/8"]


@pytest.mark.parametrize(("method", "code", "has_body"), [
    pytest.param("GET", 201, True, id="201"),
    pytest.param("GET", 404, True, id="404"),
    pytest.param("POST", 500, True, id="500"),
    pytest.param("GET", 204, False, id="204"),
    pytest.param("GET", 304, False, id="304"),
    pytest.param("HEAD", 200, False, id="HEAD"),
])
def test_status_headers_and_bodies_come_back(client: Client, keys: dict[str, str],
                                             primary: Upstream, method: str, code: int,
                                             has_body: bool) -> None:
    response = client.open("/v1/x", method=method,
                           headers=auth(keys["echo"], **{"X-Upstream-Do": f"status:{code}"}))
    assert response.status_code == code
    assert response.headers["X-Status-Header"] == "yes"
    assert response.headers["Request-Id"].startswith("req_")
    assert bool(response.data) is has_body
    if method == "HEAD":
        assert int(response.headers["Content-Length"]) > 0  # what a GET would send
    if has_body:
        assert echoed(response.data)["method"] == method


def test_content_encoding_passes_through_undecoded(client: Client, keys: dict[str, str],
                                                   primary: Upstream) -> None:
    response = client.get("/", headers=auth(keys["echo"], **{"X-Upstream-Do": "gzip",
                                                             "Accept-Encoding": "gzip"}))
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Length"] == str(len(GZIP_BODY))
    assert response.data == GZIP_BODY


@pytest.mark.parametrize(("location", "expected"), [
    pytest.param("{upstream}/base/next?x=1", "/sandbox/next?x=1", id="into-the-backend"),
    pytest.param("/base/login", "/sandbox/login", id="path-into-the-backend"),
    pytest.param("https://example.com/elsewhere", "https://example.com/elsewhere",
                 id="external"),
    pytest.param("https://127.0.0.1:{port}/base/next", "/sandbox/next",
                 id="backend-host-as-https"),  # what a backend told X-Forwarded-Proto builds
    pytest.param("http://127.0.0.1/base/next", "/sandbox/next", id="backend-host-other-port"),
])
def test_redirects_come_back_unfollowed_and_never_name_the_backend(
        client: Client, keys: dict[str, str], primary: Upstream, location: str,
        expected: str) -> None:
    location = location.format(upstream=primary.url, port=primary.port)
    response = client.get("/sandbox/start", headers=auth(
        keys["based"], **{"X-Upstream-Do": f"redirect:{location}"}))
    assert response.status_code == 302
    assert response.headers["Location"] == expected
    assert primary.stats()["requests"] == 1  # not followed


def test_response_headers_that_are_hop_by_hop_or_name_the_backend_are_dropped(
        client: Client, keys: dict[str, str], primary: Upstream) -> None:
    response = client.get("/", headers=auth(keys["echo"], **{"X-Upstream-Do": "hop"}))
    assert response.status_code == 200
    names = {name.lower() for name, _ in response.headers.items()}
    for dropped in ("x-private-hop", "keep-alive", "proxy-authenticate", "upgrade",
                    "connection", "server", "x-powered-by"):
        assert dropped not in names, dropped
    assert response.headers["X-End-To-End"] == "kept"
    assert str(primary.port) not in str(response.headers)


def test_repeated_response_headers_are_kept(client: Client, keys: dict[str, str],
                                            primary: Upstream) -> None:
    response = client.get("/", headers=auth(keys["echo"], **{"X-Upstream-Do": "cookies"}))
    assert response.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_large_responses_stream_intact(client: Client, keys: dict[str, str],
                                       primary: Upstream, mode: str) -> None:
    action = "stream:5" + (":chunked" if mode == "chunked" else "")
    response = client.get("/", headers=auth(keys["echo"], **{"X-Upstream-Do": action}),
                          buffered=False)
    digest, size, pieces = hashlib.sha256(), 0, 0
    for piece in response.response:
        digest.update(piece)
        size += len(piece)
        pieces += 1
    response.close()
    assert size == 5 << 20
    assert pieces > 1  # passed on piece by piece, not as one buffer
    expected = hashlib.sha256(PATTERN * 80).hexdigest()
    assert digest.hexdigest() == expected


@pytest.mark.parametrize("value", ["X-Private-Hop", " Keep-Alive \t", "", " ", "\x0b", "a,b",
                                   '"x-q"', 'a, "b,c"', "close, X-A", "X-A,"])
def test_connection_tokens_one_way_or_the_other(value: str) -> None:
    # one plain token is read without werkzeug's parser: the same names either way
    expected = {token.strip().lower() for token in parse_list_header(value) if token.strip()}
    assert _connection_tokens([value]) == expected


class _Canned:
    """A socket whose one ``recv`` returns a whole canned response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        data, self.data = self.data, b""
        return data


_S = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(("head", "sorted_by_reader"), [
    pytest.param(_S + b"Server: gunicorn\r\nDate: Sun, 29 Nov 2026 03:30:00 GMT\r\n"
                 b"Connection: keep-alive\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 2\r\n", True, id="gunicorn"),
    pytest.param(_S + b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                 b"X-Powered-By: php\r\nKeep-Alive: timeout=5\r\nTE: x\r\nContent-Length: 2\r\n",
                 True, id="dropped-and-repeated"),
    pytest.param(_S + b"X-A: a\r\n", True, id="no-length"),
    pytest.param(_S + b"Server: x\r\nDate: d\r\n", True, id="none-passed"),
    pytest.param(_S + b"Content-Length: 2\r\ncontent-length: 2\r\n", False, id="two-lengths"),
    pytest.param(_S + b"Content-Length: 2, 2\r\n", False, id="a-list-of-lengths"),
    pytest.param(_S + b"Location: http://127.0.0.1:9/base/next\r\nContent-Length: 2\r\n",
                 False, id="url-rewritten"),
    pytest.param(_S + b"Link: <http://127.0.0.1:9/base/a>; rel=next\r\n", False, id="link"),
    pytest.param(_S + b"Connection: close, X-Secret\r\nX-Secret: s\r\nX-A: a\r\n"
                 b"Content-Length: 2\r\n", False, id="named-by-connection"),
    pytest.param(_S + b"Connection: Keep-Alive\r\nContent-Length: 2\r\n", False,
                 id="keep-alive-any-case"),
    pytest.param(_S + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\nX-A: a\r\n", False,
                 id="chunked-beside-length"),
    pytest.param(b"HTTP/1.0 200 OK\r\nX-A: a\nContent-Length: 2\r\n", False, id="any-head"),
])
def test_the_headers_sorted_by_the_head_reader_are_what_the_general_way_passes(
        head: bytes, sorted_by_reader: bool) -> None:
    # the usual response goes back as the head reader sorted it in its loop; what it
    # passes back must be what response_headers' header-by-header loop passes
    from envroute.proxy import headers, wire
    from envroute.proxy.backend import ProxyBackend
    from envroute.settings import BackendSettings

    upstream = ProxyBackend(BackendSettings(name="b", url="http://127.0.0.1:9/base")).upstream
    env = {"SCRIPT_NAME": "/sandbox", "PATH_INFO": "/x"}
    for _ in range(2):  # the second time from the remembered lines
        raw = wire.Response(wire.Link(None, _Canned(head + b"\r\nok")), "GET", lambda _: None)
        sorted_, marker = raw.passed, [("X-Sorted", "by the reader")]
        raw.passed = None  # the general way
        general = headers.response_headers(raw, upstream, env, backend="b")
        raw.passed = marker if sorted_ is not None else None
        taken = headers.response_headers(raw, upstream, env, backend="b") == marker
        assert taken is sorted_by_reader
        if taken:
            assert sorted_ == general
        assert all(name.lower() not in ("server", "date", "connection", "keep-alive", "te",
                                        "x-powered-by", "x-secret") for name, _ in general)
