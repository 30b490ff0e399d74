"""``EnvRouteMiddleware``: envroute's gateway in front of a Django project's views.

Put it first in ``MIDDLEWARE``. For each request it runs the gateway's admission
(credential -> identity -> policies -> route, :meth:`envroute.EnvRouter.admit`) on the
WSGI environ, then:

- the backend ``app`` (Django itself): the request continues to the view, with the caller
  on ``request.envroute`` and in ``request.environ["envroute.identity"]``;
- any other backend (an in-process WSGI app, an upstream URL): that backend answers, its
  response streamed back as a :class:`~django.http.StreamingHttpResponse`, and no view
  runs (failover moves to the next backend as the gateway does);
- a refusal: an ``application/problem+json`` response with the contract's status and
  headers (``WWW-Authenticate`` on 401, ``Retry-After`` on 429).

Every response carries ``Request-Id``. Security: the caller's credential and any
client-sent ``Envroute-*`` header are removed from the environ before a view or backend
runs, so a view can trust ``request.envroute``; paths in ``ENVROUTE_EXEMPT_PATHS`` (the
admin, a health check) pass through unauthenticated with ``request.envroute = None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from envroute import BackendUnavailable, ConfigError, EnvRouter, Problem
from envroute.errors import EnvironmentMismatch
from envroute.gateway import (
    BACKEND_KEY,
    IDENTITY_KEY,
    REQUEST_ID_KEY,
    Admission,
    as_problem,
    new_request_id,
    try_backends,
)
from envroute.problems import PROBLEM_CONTENT_TYPE
from envroute.proxy import HOP_BY_HOP
from envroute.settings import APP_BACKEND
from envroute.typing import HeaderList, WSGIEnvironment

from .conf import conf
from .db import PROBLEM_KEY
from .gateway import get_router

GetResponse = Callable[[HttpRequest], HttpResponseBase]


class EnvRouteMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        try:  # Django builds middleware at start-up: a broken config stops the server there
            get_router()
        except ConfigError as exc:
            raise ImproperlyConfigured(f"settings.ENVROUTE: {exc.key or '-'}: {exc.reason}"
                                       ) from exc

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        environ: WSGIEnvironment = getattr(request, "environ", request.META)
        request_id: str = environ.setdefault(REQUEST_ID_KEY, new_request_id())
        request.envroute = None  # type: ignore[attr-defined]
        exempt = conf.exempt_paths
        if exempt and request.path_info.startswith(exempt):
            response = self.get_response(request)
            response["Request-Id"] = request_id
            return response
        started = time.perf_counter()
        router = get_router()
        try:
            admission = router.admit(environ)
        except Exception as exc:  # every refusal becomes a problem; never a traceback
            return self._refuse(router, environ, as_problem(exc, request_id), started)
        request.envroute = admission.identity  # type: ignore[attr-defined]
        request.__dict__.pop("headers", None)  # re-read without the credential
        try:
            response = self._dispatch(request, environ, router, admission)
        except Exception as exc:
            return self._refuse(router, environ, as_problem(exc, request_id), started)
        recorded = environ.get(PROBLEM_KEY)  # §18: a fence violation, a foreign envroute_id
        if isinstance(recorded, Problem):  # Django's own page for it is dropped, not closed:
            return self._refuse(router, environ, recorded, started)
        for name, value in admission.headers:
            response[name] = value
        response["Request-Id"] = request_id
        router.log(environ, admission.identity, response.status_code, started)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception
                          ) -> HttpResponse | None:
        """§18: a view that touched another environment's data is a 403, never a 500."""
        if not isinstance(exception, EnvironmentMismatch):
            return None
        environ: WSGIEnvironment = getattr(request, "environ", request.META)
        environ.setdefault(PROBLEM_KEY, Problem(
            "environment_mismatch", "the request touched another environment's data"))
        return problem_response(environ[PROBLEM_KEY], environ[REQUEST_ID_KEY])

    def _dispatch(self, request: HttpRequest, environ: WSGIEnvironment, router: EnvRouter,
                  admission: Admission) -> HttpResponseBase:
        def call(name: str) -> HttpResponseBase:
            environ[BACKEND_KEY] = name
            if name == APP_BACKEND:
                return self.get_response(request)
            return call_wsgi(router.backends[name], environ)

        return try_backends(admission.decision.backends,
                            environ.get("REQUEST_METHOD", "GET"), call)

    def _refuse(self, router: EnvRouter, environ: WSGIEnvironment, problem: Problem,
                started: float) -> HttpResponse:
        request_id = environ[REQUEST_ID_KEY]
        response = problem_response(problem, request_id,
                                    head=environ.get("REQUEST_METHOD") == "HEAD")
        router.log(environ, environ.get(IDENTITY_KEY), problem.status, started)
        return response


def problem_response(problem: Problem, request_id: str, *, head: bool = False) -> HttpResponse:
    """The contract's ``application/problem+json`` refusal as a Django response."""
    body = problem.body(request_id)
    response = HttpResponse(b"" if head else body, status=problem.status,
                            content_type=PROBLEM_CONTENT_TYPE)
    for name, value in problem.response_headers(request_id, body):
        response[name] = value
    return response


def call_wsgi(app: Callable[..., Iterable[bytes]], environ: WSGIEnvironment
              ) -> StreamingHttpResponse:
    """Run a WSGI app and stream its response back through Django.

    The body is not buffered: Django iterates it as the client reads, and closes the
    app's iterable when done (``StreamingHttpResponse`` calls its ``close``).
    """
    started: list[tuple[str, HeaderList]] = []
    written: list[bytes] = []

    def start_response(status: str, headers: HeaderList, exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, headers)]
        return written.append  # the legacy write() callable, buffered before the body

    result = app(environ, start_response)
    chunks = iter(result)
    first: list[bytes] = []
    if not started:  # a generator app calls start_response on its first iteration
        for chunk in chunks:
            first.append(chunk)
            if started:
                break
    if not started:
        raise BackendUnavailable("the backend returned without starting a response")
    status, headers = started[0]

    def body() -> Iterator[bytes]:
        yield from written
        yield from first
        yield from chunks

    response = StreamingHttpResponse(_Closing(body(), result), status=int(status[:3]),
                                     reason=status[4:] or None)
    del response["Content-Type"]
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            continue
        if lower == "set-cookie":
            response.cookies.load(value)
        else:
            response[name] = value
    return response


class _Closing:
    """Iterates ``body`` and closes the WSGI app's own iterable, as a server would."""

    def __init__(self, body: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._body = body
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
