"""``EnvRouter``: the WSGI middleware that authenticates, applies policies and routes.

The request's whole path reads top to bottom in :func:`envroute.handler.handle`, which
every front end runs (``EnvRouter.__call__``, Flask, Django):

    credential -> identity -> policies -> route -> backend

This module holds what that path is built from and what it lives with: the configuration,
the store, the authenticator, policies, routes and backends (configured and stored), and
the lifecycle: :meth:`EnvRouter.on_change` (a key, customer or backend changed somewhere)
and :meth:`EnvRouter.close` (release pools, listeners, timers).

Security notes: client-sent ``Envroute-*`` headers are dropped before anything reads them,
the caller's credential is removed before any backend runs, and ``envroute.identity`` is
set only by the gateway, so a backend can trust what it finds in the environ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from time import monotonic, time
from typing import Any, NamedTuple

from . import accesslog, metrics
from .auth import Authenticator, build_authenticator
from .backends import StoredBackends, build_backends
from .config import ConfigSource, load_settings
from .credentials import Credential, CredentialReader
from .customers import CustomerManager
from .errors import ConfigError, StoreUnavailable
from .handler import handle, new_request_id, try_backends
from .identity import Identity
from .lifecycle import KeyManager
from .names import BACKEND_KEY, IDENTITY_KEY, REQUEST_ID_KEY
from .ownpaths import OwnPaths, health_check
from .policies import Policy, build_policies
from .problems import Problem, as_problem
from .routing import Decision, Router
from .scopes import ScopePolicy
from .settings import APP_BACKEND
from .stored_backends import BackendManager
from .stores import InvalidationSource, KeyStore, open_store
from .stores.base import Change
from .typing import HeaderList, StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("envroute")

#: Re-exported for code written against 0.1 (``from envroute.gateway import …``).
__all__ = ["BACKEND_KEY", "IDENTITY_KEY", "REQUEST_ID_KEY", "Admission", "EnvRouter",
           "as_problem", "load_settings", "new_request_id", "try_backends"]

_ENVROUTE_HEADER = "HTTP_ENVROUTE_"
class EnvRouter:
    """Wrap a WSGI app (or none, as a standalone gateway) with keys, policies and routing.

    ``EnvRouter(app, "envroute.toml")`` or ``EnvRouter.from_config({...}, app=app)``. The
    wrapped app is the backend named ``"app"``; ``backends={"name": wsgi_app}`` adds other
    in-process backends given as objects. ``store`` overrides ``[store] url``. Call
    :meth:`close` when done with it (tests, a reloaded configuration).
    """

    def __init__(
        self,
        app: WSGIApplication | None = None,
        config: ConfigSource = None,
        *,
        backends: Mapping[str, WSGIApplication] | None = None,
        store: KeyStore | None = None,
    ) -> None:
        builtin: dict[str, WSGIApplication] = dict(backends or {})
        if app is not None:
            builtin[APP_BACKEND] = app
        for name, given in builtin.items():  # refused now, not with a 502 per request
            if not callable(given):
                raise ConfigError(f"{type(given).__name__} {given!r:.60} is not a WSGI "
                                  "application (a callable)",
                                  key="app" if name == APP_BACKEND else f"backends.{name}",
                                  source="EnvRouter()")
        self.app = app
        self._given = builtin
        self.settings = settings = load_settings(config, builtin)
        self.store = store if store is not None else open_store(settings.store_url)
        store_answered = self._verify_store_secrets()
        self.credentials = CredentialReader(settings.auth)
        self.authenticator: Authenticator = build_authenticator(settings, self.store)
        self.policies: tuple[Policy, ...] = build_policies(settings)
        # the request path's shortcut for a cached key (see _admit)
        self._policy_free = all(isinstance(p, ScopePolicy) for p in self.policies)
        # (the scope policy lets every unrestricted identity through, doing nothing)
        self._verified = self.authenticator.api_keys.verified.entries
        self._salt = self.authenticator.api_keys.token.salt
        self._header_key = self.credentials.header_key
        self._strip_more = bool(self.credentials.query_param)
        self.router = Router(settings.routes)
        self._memo = self.router.memo
        self.backends = build_backends(settings, builtin)
        self.stored_backend_apps = StoredBackends(
            self.store, signing_secret=settings.signing_secret, configured=self.backends)
        if store_answered:  # else loaded on first need: one start-up line, not two
            self.stored_backend_apps.load()
        self.access_log = accesslog.AccessLog(settings.logging)
        self.outage = accesslog.OutageLog()
        self.own_paths = OwnPaths()
        if settings.health.path:
            self.own_paths.add(settings.health.path, health_check(self.store))
        scrape = metrics.enable(settings.metrics)  # None unless [metrics] path is set
        if scrape is not None:
            self.own_paths.add(scrape.path, scrape.answer)
        accesslog.install(settings.logging)
        if isinstance(self.store, InvalidationSource):
            self.store.subscribe(self.on_change)

    def _verify_store_secrets(self) -> bool:
        """Refuse to start when the store's keys were made under an unknown secret.

        False (after one warning line) when the store does not answer: starting is still
        right, requests get 503 until it does, and stored backends load on first need.
        """
        from .secrets import verify_store_secrets

        try:
            verify_store_secrets(self.store, self.settings)
        except StoreUnavailable as exc:
            logger.warning("the store is unavailable at start-up (its key secrets are not "
                           "checked, stored backends load when it answers): %s", exc)
            return False
        return True

    @classmethod
    def from_config(
        cls, config: ConfigSource, app: WSGIApplication | None = None, **kwargs: Any
    ) -> EnvRouter:
        """Build from a dict (the TOML schema), a path, or ``Settings``."""
        return cls(app, config, **kwargs)

    # -- management and lifecycle ---------------------------------------------------------

    @cached_property
    def keys(self) -> KeyManager:
        """The key lifecycle under this gateway's store and config; a change made here is
        honoured by this process at once (``notify=on_change``)."""
        return KeyManager(self.store, self.settings, notify=self.on_change)

    @cached_property
    def customers(self) -> CustomerManager:
        """Customers (§12), as :attr:`keys`: a change is honoured here at once."""
        return CustomerManager(self.store, self.settings, notify=self.on_change)

    @cached_property
    def stored_backends(self) -> BackendManager:
        """Stored backends (§13), as :attr:`keys`: this gateway serves a change at once."""
        return BackendManager(self.store, self.settings, notify=self.on_change)

    def on_change(self, change: Change) -> None:
        """A key, customer or stored backend changed (here, or pushed by the store).

        Backends are reloaded before cached verdicts are dropped: a ``Change("all")`` may
        carry both a new backend and a customer moved onto it, and the customer must not
        be read afresh while the backend is still unknown here (a 502 during a move)."""
        if change.kind in ("backend", "all"):
            self.stored_backend_apps.load()
        self.authenticator.on_change(change)

    def close(self) -> None:
        """Release what this gateway opened: store pools and listeners, proxy pools,
        rate-limit storage, the usage timer. Each is released even if another fails."""
        built = [b for name, b in self.backends.items() if name not in self._given]
        parts: list[Any] = [self.authenticator, *self.policies, *built,
                            self.stored_backend_apps, self.store]
        for part in parts:
            close = getattr(part, "close", None)
            if not callable(close):
                continue
            try:
                close()
            except Exception:  # releasing is best effort; report, carry on
                logger.exception("closing %r failed", part)

    # -- the request's path -----------------------------------------------------------

    #: ``router(environ, start_response)``: :func:`envroute.handler.handle` itself, not a
    #: method calling it (one Python call less per request, issue 14)
    __call__ = handle

    def handle(self, environ: WSGIEnvironment, start_response: StartResponse, *,
               app: WSGIApplication | None = None) -> Iterable[bytes]:
        """Serve one request; a front end that serves the backend ``app`` itself (Django's
        views) passes it as ``app``. See :mod:`envroute.handler`."""
        return handle(self, environ, start_response, app)

    def admit(self, environ: WSGIEnvironment) -> Admission:
        """Authenticate, apply policies and route, without calling any backend.

        Raises :class:`Problem` (or an :class:`EnvrouteError` that :func:`as_problem`
        translates) to refuse. On success the environ carries ``envroute.identity`` and
        ``envroute.backend``, and no longer carries the credential or any client-sent
        ``Envroute-*`` header.
        """
        identity, _, headers = self._admit(environ)
        decision = self.router.route(identity, environ)  # (a key's: remembered, not redone)
        environ[BACKEND_KEY] = decision.backends[0]
        return Admission(identity, decision, list(headers))

    def _admit(self, environ: WSGIEnvironment
               ) -> tuple[Identity, tuple[str, ...], Sequence[tuple[str, str]]]:
        """:meth:`admit` as the request path calls it: the identity, the backends to try
        in order, and the policies' response headers.

        The commonest request, an unrestricted API key in ``Authorization: Bearer`` that
        this process verified lately, with no policy but scopes configured, takes a
        shortcut with the same outcome: the cached identity (:meth:`ApiKeyVerifier.cached`)
        instead of reading, parsing and verifying the credential afresh, no policy to run,
        and the route remembered for that identity (:attr:`Router.memo`). Anything else (a
        miss, an expired, refused or restricted key, a token, another credential place,
        rate limits) goes the whole way.
        """
        # one C-speed scan, rarely true; without a separator a name may seem to straddle
        # two keys, which costs only the exact look below
        if _ENVROUTE_HEADER in "".join(tuple(environ)):  # (a tuple: joined without a copy)
            for name in [k for k in environ if k.startswith(_ENVROUTE_HEADER)]:
                del environ[name]  # only the gateway speaks for the caller
        authorization = environ.get("HTTP_AUTHORIZATION")
        if self._policy_free and type(authorization) is str and authorization[:7] == "Bearer ":
            value = authorization[7:]
            # ApiKeyVerifier.cached, inline: the token, the entry, its expiries
            token = (hash(value), hash(value + self._salt))
            entry = self._verified.get(token)
            if entry is not None and entry[0] > monotonic() and \
                    (identity := entry[1].unrestricted) is not None and \
                    entry[1].valid_until > time():
                try:  # noqa: SIM105 - contextlib.suppress costs more than the look-up itself
                    self._verified.move_to_end(token)  # the LRU's recency
                except KeyError:  # evicted by another thread meanwhile: still a hit
                    pass
                if metrics.on:
                    metrics.auth_cache("hit")
                environ[IDENTITY_KEY] = identity
                del environ["HTTP_AUTHORIZATION"]
                if self._strip_more or "HTTP_REFERER" in environ or self._header_key in environ:
                    self.credentials.strip(environ, Credential(value, "bearer"))
                memo = self._memo.get(id(identity))  # Router.route, inline
                if memo is not None and memo[0] is identity:
                    return identity, memo[2], ()
                return identity, self.router.route(identity, environ).backends, ()
        credential = self.credentials.read(environ)
        identity = self.authenticator.authenticate(credential)
        environ[IDENTITY_KEY] = identity
        self.credentials.strip(environ, credential)
        headers: HeaderList = []
        for policy in self.policies:
            headers.extend(policy.check(identity, environ))
        return identity, self.router.route(identity, environ).backends, headers

    def backend(self, name: str) -> WSGIApplication:
        """The backend called ``name``: configured, else stored (§13).

        A name that is neither (a ``backend_from`` attribute naming a backend that does not
        exist, or was removed) is refused with ``backend_unavailable`` and logged with the
        name; the request never goes to any other backend.
        """
        backend = self.backends.get(name) or self.stored_backend_apps.get(name)
        if backend is None:
            logger.warning("no backend named %r (neither configured nor stored); the "
                           "request is refused with backend_unavailable", name)
            raise Problem("backend_unavailable", "the backend this request is routed to "
                          "does not exist")
        return backend


class Admission(NamedTuple):
    """A request the gateway accepted: who, where to, and headers the policies added."""

    identity: Identity
    decision: Decision
    headers: HeaderList
