"""The request's one path through the gateway, shared by every front end.

``EnvRouter.__call__`` (gunicorn, ``envroute serve``, a wrapped app), the Flask extension
(which installs the router as ``app.wsgi_app``) and the Django middleware all run
:func:`handle`, so there is exactly one orchestration:

    request id -> gateway-answered paths (health) -> admit (credential -> identity ->
    policies -> route) -> backend, with failover -> Request-Id and policy headers ->
    access line

A refusal anywhere is a :class:`~envroute.problems.Problem` translated in one place
(:func:`envroute.problems.as_problem`). A front end that serves the backend ``app``
itself (Django's views) passes it as ``app=``; the response then reaches its server
exactly as the core made it: every header line, in order, and the body bytes. The
request's state and its response, and the PEP 3333 error path, are
:class:`envroute.exchange.Exchange`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .errors import BackendUnavailable
from .exchange import EXCHANGE_KEY, Exchange, log_failure, new_request_id
from .identity import Identity
from .names import BACKEND_KEY, IDEMPOTENT_METHODS, IDENTITY_KEY
from .problems import Problem, as_problem
from .settings import APP_BACKEND
from .typing import StartResponse, WSGIApplication, WSGIEnvironment

if TYPE_CHECKING:
    from .gateway import EnvRouter

__all__ = ["EXCHANGE_KEY", "Exchange", "handle", "new_request_id", "refusal", "try_backends"]

logger = logging.getLogger("envroute")

T = TypeVar("T")


def refusal(environ: WSGIEnvironment, exc: BaseException) -> Problem:
    """The problem for ``exc``, noted on the request's exchange and logged as the request
    path logs failures: for front ends that answer an exception themselves (Django's
    ``process_exception``, a Flask error handler)."""
    problem = as_problem(exc)
    exchange = environ.get(EXCHANGE_KEY)
    if isinstance(exchange, Exchange):
        exchange.code = problem.code
        log_failure(None, exchange, exc)
    return problem


def try_backends(names: Sequence[str], method: str, call: Callable[[str], T]) -> T:
    """``call(name)`` for each backend in turn, moving on only when failover is safe.

    The next backend is tried only after :class:`BackendUnavailable` that is retryable
    (nothing of the request body was sent) and only for idempotent methods: a POST is
    never sent twice.
    """
    for attempt, name in enumerate(names):
        try:
            return call(name)
        except BackendUnavailable as exc:
            if attempt == len(names) - 1 or not exc.retryable or method not in IDEMPOTENT_METHODS:
                raise
            logger.warning("backend %s unavailable (%s); failing over to %s",
                           name, exc, names[attempt + 1])
    raise ValueError("a route names at least one backend")


def handle(router: EnvRouter, environ: WSGIEnvironment, start_response: StartResponse,
           app: WSGIApplication | None = None) -> Iterable[bytes]:
    """Serve one request through ``router``; ``app`` serves the backend ``app`` if given."""
    exchange = Exchange(router, environ, start_response, app)
    own_paths = router.own_paths
    if own_paths.paths and (own := own_paths.find(environ)) is not None:
        return exchange.answer_own(own)
    try:
        identity, names, exchange.extra = router._admit(environ)
    except Exception as exc:  # every refusal is a problem; never a traceback
        known = environ.get(IDENTITY_KEY)  # refused by a policy or the route
        exchange.identity = known if isinstance(known, Identity) else None
        return exchange.refuse_now(exc)
    exchange.identity = identity
    if router.outage.down_since is not None:
        router.outage.admitted()
    try:
        if len(names) == 1:  # Exchange.call, inline
            environ[BACKEND_KEY] = exchange.backend = name = names[0]
            backend = app if app is not None and name == APP_BACKEND else \
                router.backends.get(name) or router.backend(name)
            exchange.result = result = backend(environ, exchange.start)
        else:
            result = try_backends(names, exchange.method, exchange.call)
        if type(result) is list or type(result) is tuple:  # the body exists already
            head = exchange.head
            if head is not None and not exchange.started:
                for chunk in result:
                    if type(chunk) is not bytes:
                        break  # Exchange.whole says what is wrong with it
                else:  # Exchange.whole, inline for the commonest response (issue 14)
                    exchange.started = exchange.recorded = True
                    exchange.writer = start_response(head[0], head[1])
                    exchange.status = head[2]
                    router.authenticator.record(identity, head[2])
                    exchange.log()
                    return result
            return exchange.whole(result)
    except Exception as exc:
        return exchange.refuse_now(exc)
    return exchange
