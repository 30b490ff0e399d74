"""Paths the gateway answers itself, before any credential is read: health (and metrics).

``[health] path = "/healthz"`` (§17): a ``GET`` or ``HEAD`` of exactly that path, with no
credential, is answered here: ``200 {"status": "ok"}`` when the key store answers a
look-up, ``503 store_unavailable`` (a problem) when it does not. It never reaches a
backend, so a load balancer's probe cannot be routed, rate limited or proxied.

This is the one place such paths are registered (:class:`OwnPaths`): a ``[metrics] path``
registers its answer beside health's, as an :class:`Answer` handler (:meth:`OwnPaths.add`)
or a small WSGI app (:meth:`OwnPaths.add_app`; its body is read in full). Only the exact
path and the listed methods match; anything else (``/healthz/x``, a ``POST``) goes
through the gateway like any request.

Security: an answer here must not reveal a key, a customer or a backend's address, and
one that checks a credential (a metrics token) checks it itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

from .problems import Problem
from .stores.base import KeyStore
from .typing import HeaderList, WSGIApplication, WSGIEnvironment


class Answer(NamedTuple):
    """A response the gateway makes itself: status, headers (no ``Request-Id``), body."""

    status: int
    headers: HeaderList
    body: bytes


#: An own path's handler: answers, or raises :class:`Problem` to refuse.
Handler = Callable[[WSGIEnvironment], Answer]

#: A hash no key can have: looking it up asks the store a real question cheaply.
_PROBE = b"\0" * 32


class OwnPaths:
    """Exact path -> (methods, handler) for the requests the gateway answers itself."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[frozenset[str], Handler]] = {}

    def __bool__(self) -> bool:
        return bool(self.paths)

    def add(self, path: str, handler: Handler,
            methods: Collection[str] = ("GET", "HEAD")) -> None:
        if path in self.paths:
            raise ValueError(f"the path {path!r} is already answered by the gateway")
        self.paths[path] = (frozenset(methods), handler)

    def add_app(self, path: str, app: WSGIApplication,
                methods: Collection[str] = ("GET", "HEAD")) -> None:
        """Answer ``path`` with a WSGI app (its whole body is read: keep it small)."""
        self.add(path, _answer_with(app), methods)

    def find(self, environ: WSGIEnvironment) -> Handler | None:
        """The handler for this request, or None if the gateway should route it."""
        entry = self.paths.get(environ.get("PATH_INFO", ""))
        if entry is None or environ.get("REQUEST_METHOD", "GET") not in entry[0]:
            return None
        return entry[1]


def health_check(store: KeyStore) -> Handler:
    """The ``[health] path`` handler: does the key store answer?"""

    def answer(environ: WSGIEnvironment) -> Answer:
        try:
            store.lookup(_PROBE)
        except Exception:  # whatever the cause, the store did not answer
            raise Problem("store_unavailable", "the key store cannot be reached") from None
        body = json.dumps({"status": "ok"}).encode()
        return Answer(200, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")], body)

    return answer


def _answer_with(app: WSGIApplication) -> Handler:
    def answer(environ: WSGIEnvironment) -> Answer:
        head: list[tuple[str, HeaderList]] = []

        def start_response(status: str, headers: HeaderList, exc_info: Any = None, /
                           ) -> Callable[[bytes], object]:
            head[:] = [(status, [h for h in headers if h[0].lower() != "request-id"])]
            return _no_write

        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = head[0]
        return Answer(int(status[:3]), headers, body)

    return answer


def _no_write(data: bytes) -> object:
    raise RuntimeError("write() is not available to a gateway-answered path")
