"""``EnvRouteMiddleware``: envroute's gateway in front of a Django project's views.

Put it first in ``MIDDLEWARE``. It runs the core's one request path
(:meth:`envroute.EnvRouter.handle`: request id, credential -> identity -> policies ->
route, failover, ``Request-Id``, policy headers, the access line) and adapts, never
re-implements:

- the backend ``app`` is Django itself: the request continues to the view, with the
  caller on ``request.envroute`` and in ``request.environ["envroute.identity"]``, and the
  view's own response gets the gateway's headers;
- any other backend (an in-process WSGI app, an upstream URL) answers without a view; its
  response reaches the caller exactly as it would through gunicorn: every header line in
  order (two ``Link`` headers stay two), every ``Set-Cookie`` line untouched (a
  ``Partitioned`` cookie, two cookies of one name with different paths), the status line
  and the body bytes, streamed (:class:`WSGIResponse`);
- a refusal is the core's ``application/problem+json`` response, carried the same way.

A view that touches another environment's data raises
``django_envroute.db.CrossEnvironmentAccess`` (an :class:`envroute.errors.EnvironmentMismatch`);
:meth:`EnvRouteMiddleware.process_exception` answers it ``403 environment_mismatch`` with
the request's transaction rolled back, through the core's one error translation. A
refusal ``django_envroute.db`` recorded on the request (``PROBLEM_KEY``: a fence
violation the view swallowed, an ``envroute_id`` of another environment) replaces the
view's response the same way.

Security: the caller's credential and any client-sent ``Envroute-*`` header are removed
from the environ before a view or backend runs, so a view can trust ``request.envroute``;
paths in ``ENVROUTE_EXEMPT_PATHS`` (the admin) pass through unauthenticated with
``request.envroute = None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from envroute import ConfigError, EnvironmentMismatch
from envroute.handler import new_request_id, refusal
from envroute.names import IDENTITY_KEY, REQUEST_ID_KEY
from envroute.problems import PROBLEM_CONTENT_TYPE, Problem
from envroute.typing import HeaderList, StartResponse, WSGIEnvironment

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
        request.envroute = None  # type: ignore[attr-defined]
        exempt = conf.exempt_paths
        if exempt and request.path_info.startswith(exempt):
            response = self.get_response(request)
            response["Request-Id"] = environ.setdefault(REQUEST_ID_KEY, new_request_id())
            return response
        views = _DjangoViews(self.get_response, request)
        head = _Head()
        result = get_router().handle(environ, head.start_response, app=views)
        chunks = iter(result)
        first = []
        for chunk in chunks:  # the core starts its response with the first body bytes
            first.append(chunk)
            if head.status:
                break
        if views.response is not None:  # Django's own view answered: add the gateway's
            for _ in chunks:  # headers (Request-Id, RateLimit-*); its body stays its own
                pass
            _close(result)  # writes the access line
            for name, value in head.headers:
                views.response[name] = value
            return views.response
        if isinstance(result, list):  # made in memory by the core: a refusal, health
            return WSGIBufferedResponse(head.status, head.headers, b"".join(result))
        return WSGIResponse(head.status, head.headers, _Closing(chain(first, chunks), result))

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponse | None:
        """A view touched another environment's data: ``403 environment_mismatch``."""
        if not isinstance(exception, EnvironmentMismatch):
            return None
        # Django calls this once the exception has left the view, and with it the view's
        # atomic block (ATOMIC_REQUESTS, or the view's own): its writes are rolled back.
        environ: WSGIEnvironment = getattr(request, "environ", request.META)
        problem = refusal(environ, exception)
        return problem_response(problem, environ.get(REQUEST_ID_KEY, "-"),
                                head=request.method == "HEAD")


class _DjangoViews:
    """The backend ``app`` as the core calls it: Django's views, via ``get_response``.

    It starts an empty response with the view's status, so the core adds its headers and
    writes the access line, while the view's response object stays Django's.
    """

    def __init__(self, get_response: GetResponse, request: HttpRequest) -> None:
        self.get_response = get_response
        self.request = request
        self.response: HttpResponseBase | None = None

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        request = self.request
        request.envroute = environ.get(IDENTITY_KEY)  # type: ignore[attr-defined]
        request.__dict__.pop("headers", None)  # re-read without the credential
        response = self.get_response(request)
        recorded = environ.get(PROBLEM_KEY)  # §18: a fence violation, a foreign envroute_id
        if isinstance(recorded, Problem):  # even if the view swallowed it or Django made a
            raise recorded  # page of it: the core answers the problem (the page is dropped)
        self.response = response
        start_response(f"{response.status_code} {response.reason_phrase}", [])
        return []


class _Head:
    """Captures the status line and header list the core starts its response with."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: HeaderList = []

    def start_response(self, status: str, headers: HeaderList, exc_info: Any = None) -> Any:
        if exc_info is not None and self.status:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, list(headers)
        return _no_write


def _no_write(data: bytes) -> None:
    raise RuntimeError("write() is not available through EnvRouteMiddleware")


class _ExactHeaders:
    """Header handling shared by :class:`WSGIResponse` and :class:`WSGIBufferedResponse`.

    Django's ``WSGIHandler`` (and the ASGI handler) send ``response.items()`` plus
    ``response.cookies``. Here ``items()`` yields the core's header lines exactly as sent
    (repeated names, every ``Set-Cookie`` line), then whatever later middleware set; a
    header a later middleware changed or deleted is sent as it left it. ``cookies``
    starts empty, so no cookie is parsed and re-serialised (Django's cookie jar would
    collapse two cookies of one name and drop attributes it does not know).
    """

    headers: Any

    def _take(self, headers: HeaderList) -> None:
        del self.headers["Content-Type"]  # only what the backend sent
        self._lines = list(headers)
        for name, value in self._lines:
            self.headers[name] = value
        self._initial = {name.lower(): self.headers[name] for name, _ in self._lines}

    def items(self) -> Iterator[tuple[str, str]]:
        current = self.headers
        initial = self._initial
        for name, value in self._lines:
            if current.get(name) == initial[name.lower()]:
                yield name, value
        for name, value in current.items():
            if initial.get(name.lower()) != value:
                yield name, value


class WSGIResponse(_ExactHeaders, StreamingHttpResponse):
    """A backend's streamed WSGI response, carried through Django with nothing lost.

    ``close()`` (Django calls it when the response is sent) closes the core's response,
    which closes the backend's and writes the access line.
    """

    def __init__(self, status: str, headers: HeaderList, body: Iterable[bytes]) -> None:
        super().__init__(body, status=int(status[:3]), reason=status[4:] or None)
        self._take(headers)


class WSGIBufferedResponse(_ExactHeaders, HttpResponse):
    """A response the core made in memory (a refusal, the health answer), exactly."""

    def __init__(self, status: str, headers: HeaderList, body: bytes) -> None:
        super().__init__(body, status=int(status[:3]), reason=status[4:] or None)
        self._take(headers)


class _Closing:
    """The body Django streams; Django calls its ``close()`` when the response is done."""

    def __init__(self, body: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._body = body
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        _close(self._result)


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def problem_response(problem: Problem, request_id: str, *, head: bool = False) -> HttpResponse:
    """The contract's ``application/problem+json`` refusal as a Django response."""
    body = problem.body(request_id)
    response = HttpResponse(b"" if head else body, status=problem.status,
                            content_type=PROBLEM_CONTENT_TYPE)
    for name, value in problem.response_headers(request_id, body):
        response[name] = value
    return response
