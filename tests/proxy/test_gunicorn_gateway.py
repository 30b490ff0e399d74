"""The proxy under a real gunicorn gateway, where sockets matter: raw request targets,
chunked uploads, 200 MiB each way in flat memory, an upstream dying mid-response and
keep-alive connection reuse."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.proxy.conftest import Gateway, Upstream, auth, header_map
from tests.proxy.upstream import PATTERN

pytestmark = pytest.mark.slow

MIB = 1 << 20
BIG = 200  # MiB
MEMORY_BUDGET = 10 * MIB


def connect(gateway: Gateway) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)


def send(gateway: Gateway, method: str, target: str, headers: dict[str, str],
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with ``target`` on the wire exactly as given (no client-side quoting)."""
    connection = connect(gateway)
    try:
        connection.request(method, target, body=body, headers=headers)
        with connection.getresponse() as response:
            return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("target", "expected"), [
    pytest.param("/v1/a%2Fb%2F%2Fc?q=%2F&r=a%20b&s", None, id="encoded-slashes-and-query"),
    pytest.param("/v1/%40user/caf%C3%A9", None, id="encoded-at-and-utf8"),
    pytest.param("/v1/a%2fb", "/v1/a%2Fb", id="lower-case-escape-upper-cased"),
    pytest.param("//evil.example/x", None, id="double-slash"),
    pytest.param("/%2F%2Fevil.example/x", None, id="encoded-double-slash"),
    pytest.param("/@evil.example/x", None, id="at-sign"),
    pytest.param("/%5Cevil.example", None, id="encoded-backslash"),
    pytest.param("http://evil.example/v1/x?y=1", "/v1/x?y=1", id="absolute-form"),
])
def test_request_targets_arrive_as_sent_and_only_at_the_backend(
        gunicorn_gateway: Gateway, keys: dict[str, str], primary: Upstream, target: str,
        expected: str | None) -> None:
    status, _, body = send(gunicorn_gateway, "GET", target, auth(
        keys["echo"], Host="evil.example", **{"X-Forwarded-Host": "evil.example"}))
    assert status == 200
    echo = json.loads(body)
    assert echo["name"] == "primary"
    assert echo["target"] == (expected or target)
    assert header_map(echo)["host"] == [f"127.0.0.1:{primary.port}"]
    assert primary.stats()["requests"] == 1


def pattern(mib: int) -> Iterator[bytes]:
    for _ in range(mib * MIB // len(PATTERN)):
        yield PATTERN


@cache
def pattern_sha256(mib: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern(mib):
        digest.update(piece)
    return digest.hexdigest()


def upload(gateway: Gateway, key: str, mib: int, *, chunked: bool) -> dict[str, Any]:
    connection = connect(gateway)
    try:
        connection.putrequest("POST", "/v1/uploads")
        connection.putheader("Authorization", f"Bearer {key}")
        connection.putheader("Content-Type", "application/octet-stream")
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        else:
            connection.putheader("Content-Length", str(mib * MIB))
        connection.endheaders()
        for piece in pattern(mib):
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            connection.send(b"0\r\n\r\n")
        with connection.getresponse() as response:
            assert response.status == 200
            result: dict[str, Any] = json.loads(response.read())
            return result
    finally:
        connection.close()


def download(gateway: Gateway, key: str, mib: int, *, chunked: bool) -> tuple[int, str]:
    connection = connect(gateway)
    try:
        action = f"stream:{mib}" + (":chunked" if chunked else "")
        connection.request("GET", "/v1/files/big", headers=auth(key, **{
            "X-Upstream-Do": action}))
        digest, size = hashlib.sha256(), 0
        with connection.getresponse() as response:
            assert response.status == 200
            while piece := response.read(MIB):
                digest.update(piece)
                size += len(piece)
        return size, digest.hexdigest()
    finally:
        connection.close()


def status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_growth(pid: int, transfer: Any) -> int:
    """How far ``transfer()`` raises the process's peak RSS above its RSS before it.

    Resets the peak (``clear_refs`` 5) where the kernel allows it; otherwise measures
    against the previous peak, which can only understate growth beyond it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = status_field(pid, "VmRSS")
    except OSError:
        before = status_field(pid, "VmHWM")
    transfer()
    return status_field(pid, "VmHWM") - before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mib_upload_streams_in_flat_memory(gunicorn_gateway: Gateway,
                                                 keys: dict[str, str], primary: Upstream,
                                                 chunked: bool) -> None:
    worker = gunicorn_gateway.worker_pid
    upload(gunicorn_gateway, keys["echo"], 4, chunked=chunked)  # warm up every buffer
    results: list[dict[str, Any]] = []
    growth = peak_growth(worker, lambda: results.append(
        upload(gunicorn_gateway, keys["echo"], BIG, chunked=chunked)))
    echo = results[0]
    assert echo["body_length"] == BIG * MIB
    assert echo["body_sha256"] == pattern_sha256(BIG)
    received = header_map(echo)
    if chunked:
        assert received["transfer-encoding"] == ["chunked"]
        assert "content-length" not in received
    else:
        assert received["content-length"] == [str(BIG * MIB)]
    assert growth < MEMORY_BUDGET, f"peak RSS grew by {growth / MIB:.1f} MiB"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mib_download_streams_in_flat_memory(gunicorn_gateway: Gateway,
                                                   keys: dict[str, str], primary: Upstream,
                                                   chunked: bool) -> None:
    worker = gunicorn_gateway.worker_pid
    download(gunicorn_gateway, keys["echo"], 4, chunked=chunked)
    results: list[tuple[int, str]] = []
    growth = peak_growth(worker, lambda: results.append(
        download(gunicorn_gateway, keys["echo"], BIG, chunked=chunked)))
    assert results[0] == (BIG * MIB, pattern_sha256(BIG))
    assert growth < MEMORY_BUDGET, f"peak RSS grew by {growth / MIB:.1f} MiB"


@pytest.mark.parametrize("action", ["die:100000", "diechunked"])
def test_an_upstream_dying_mid_response_closes_the_callers_connection(
        gunicorn_gateway: Gateway, keys: dict[str, str], primary: Upstream,
        action: str) -> None:
    connection = connect(gunicorn_gateway)
    try:
        connection.request("GET", "/v1/x", headers=auth(keys["echo"], **{
            "X-Upstream-Do": action}))
        with connection.getresponse() as response:
            assert response.status == 200
            with pytest.raises(http.client.IncompleteRead):
                response.read()
    finally:
        connection.close()
    assert "broke off its response" in gunicorn_gateway.read_log()
    # the worker is fine and the next request is served normally
    status, _, _ = send(gunicorn_gateway, "GET", "/v1/after", auth(keys["echo"]))
    assert status == 200


def test_connections_to_the_upstream_are_reused(gunicorn_gateway: Gateway,
                                                keys: dict[str, str],
                                                primary: Upstream) -> None:
    url = f"http://127.0.0.1:{gunicorn_gateway.port}/v1/ping"
    with requests.Session() as session:
        for _ in range(30):
            with session.get(url, headers=auth(keys["echo"]), timeout=10) as response:
                assert response.status_code == 200
    stats = primary.stats()
    assert stats["requests"] == 30
    assert len(stats["ports"]) <= 2, stats["ports"]  # not one connection per request

    primary.reset()

    def burst(_: int) -> None:
        with requests.Session() as session:
            for _ in range(10):
                with session.get(url, headers=auth(keys["echo"]), timeout=10) as response:
                    assert response.status_code == 200

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(burst, range(4)))
    stats = primary.stats()
    assert stats["requests"] == 40
    assert len(stats["ports"]) <= 4 + 1, stats["ports"]  # one per gateway thread, at most
