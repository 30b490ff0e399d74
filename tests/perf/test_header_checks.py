"""The response-head checks keep their verdicts when remembered (issue 14's fast path).

``envroute.handler`` remembers status lines and header names that passed their regex, and
lets plain printable ASCII values through without one. Each case is served twice by the
same gateway (the first request fills the memory, the second uses it) and after a valid
head that put the same text in the other memory: the verdict must never change.
"""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter
from tests.support.apps import SECRET

Head = tuple[Any, list[tuple[Any, Any]]]


@pytest.mark.parametrize(("head", "ok"), [
    pytest.param(("200 OK", [("Content-Type", "text/plain")]), True, id="plain"),
    pytest.param(("200 OK", [("X-Tab", "a\tb")]), True, id="value-with-tab"),
    pytest.param(("200 OK", [("X-Latin", "caf\xe9")]), True, id="value-latin-1"),
    pytest.param(("200 OK", [("X-Empty", "")]), True, id="empty-value"),
    pytest.param(("299 Whatever \xe9", []), True, id="status-latin-1-reason"),
    pytest.param(("200 OK", [("X-Bad", "a\r\nInjected: 1")]), False, id="crlf-value"),
    pytest.param(("200 OK", [("X-Del", "a\x7f")]), False, id="del-value"),
    pytest.param(("200 OK", [("X-Uni", "\u2603")]), False, id="non-latin-1-value"),
    pytest.param(("200 OK", [("X-Bytes", b"v")]), False, id="bytes-value"),
    pytest.param(("200 OK", [(b"X-Bytes", "v")]), False, id="bytes-name"),
    pytest.param(("200 OK", [("200 OK", "v")]), False, id="a-status-line-as-name"),
    pytest.param(("Content-Type", []), False, id="a-header-name-as-status"),
    pytest.param(("OK", []), False, id="no-code"),
    pytest.param((b"200 OK", []), False, id="bytes-status"),
])
def test_head_checks_are_the_same_when_remembered(tmp_path: Any, head: Head, ok: bool) -> None:
    heads = [("200 OK", [("Content-Type", "text/plain")]), head]

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, headers = heads[int(environ.get("QUERY_STRING") == "case")]
        start_response(status, headers)
        return [b"body"]

    router = EnvRouter(app, {"secret": SECRET, "store": {"url": f"sqlite:///{tmp_path}/k.db"},
                             "logging": {"access": False}})
    key = router.keys.create("sandbox").secret
    client = Client(router)
    try:
        client.get("/", headers={"X-API-Key": key}).close()  # a valid head first
        for _ in range(2):
            response = client.get("/?case", headers={"X-API-Key": key})
            assert response.status_code == (int(head[0][:3]) if ok else 502)
            response.close()
    finally:
        router.close()
