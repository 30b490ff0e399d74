"""Building the named backends: in-process WSGI apps and upstream URLs.

Import strings (``"package.module:attr"``) are loaded here, at start-up, so a typo stops
the gateway before its first request instead of failing one. A URL backend becomes a
:class:`envroute.proxy.ProxyBackend`; an app backend with ``strip_prefix`` is mounted the
way a WSGI server would mount it (the prefix moves from ``PATH_INFO`` to ``SCRIPT_NAME``).

Contract for every backend: a WSGI application. A backend that cannot produce a response
raises :class:`~envroute.errors.BackendUnavailable` or :class:`~envroute.errors.BackendTimeout`
from its ``__call__`` before calling ``start_response``, which lets the gateway fail over
or answer 502/504. A backend may also offer ``check() -> str`` (reach it, describe it)
for ``envroute check``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable, Mapping

from .errors import ConfigError, StoreUnavailable
from .imports import import_object
from .settings import BackendSettings, Settings
from .stores.base import BackendRecord, KeyStore
from .typing import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("envroute")


class PrefixStripped:
    """Mounts ``app`` under ``prefix``: the prefix leaves ``PATH_INFO`` for ``SCRIPT_NAME``."""

    def __init__(self, app: WSGIApplication, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        prefix = self.prefix
        if path == prefix or path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix) :]
        return self.app(environ, start_response)


def load_app(backend: BackendSettings, source: str) -> WSGIApplication:
    """The backend's WSGI app: the object given, or the one its import string names."""
    app = backend.app
    if isinstance(app, str):
        app = import_object(app, key=f"backends.{backend.name}.app", source=source)
    if not callable(app):
        raise ConfigError(f"{backend.app!r} is not a WSGI application (not callable)",
                          key=f"backends.{backend.name}.app", source=source)
    result: WSGIApplication = app
    return result


def build_backends(
    settings: Settings, builtin: Mapping[str, WSGIApplication]
) -> dict[str, WSGIApplication]:
    """Every configured backend plus the ``builtin`` ones (the wrapped app is ``"app"``)."""
    backends: dict[str, WSGIApplication] = dict(builtin)
    for name, backend in settings.backends.items():
        if backend.url:
            from .proxy import ProxyBackend

            backends[name] = ProxyBackend(backend, signing_secret=settings.signing_secret)
        else:
            app = load_app(backend, settings.source)
            backends[name] = PrefixStripped(app, backend.strip_prefix) if (
                backend.strip_prefix) else app
    return backends


class StoredBackends:
    """The URL backends kept in the store (§13), served beside the configured ones.

    Loaded with ``store.list_backends()`` when the gateway starts and again on a
    ``Change("backend")`` or ``Change("all")``, never per request: :meth:`get` is a dict
    look-up. A record that did not change keeps its :class:`~envroute.proxy.ProxyBackend`
    (and its pool of connections); a removed or changed one is closed once it is no
    longer served (requests in flight keep their connection to the end). If the store is
    down when the gateway starts, loading is retried at most once a second, only by
    requests that name a backend not known yet; until then they get
    ``backend_unavailable``, never another backend. A stored record with a name the
    config defines is ignored (the configured backend wins; the CLI refuses such names).

    A request naming a backend this process does not serve yet reloads once (at most once
    a second per name) before it is refused: moving a customer is ``backends add`` then
    ``customers update``, and a worker that verifies the customer afresh (a cache miss)
    can read the new placement before it has heard of the new backend. Without the
    reload that request would be a 502 during a move; the risk it bounds is a key whose
    metadata names a backend that does not exist costing one store query per second per
    process, never one per request.
    """

    RETRY_SECONDS = 1.0
    #: how many unknown names' retry times are remembered (bounded: names come from metadata)
    MISSED_NAMES = 1024

    def __init__(self, store: KeyStore, *, signing_secret: str = "",
                 configured: Collection[str] = ()) -> None:
        self.store = store
        self.signing_secret = signing_secret
        self.configured = frozenset(configured)
        self._served: dict[str, tuple[BackendRecord, WSGIApplication]] = {}
        self._loaded = False
        self._next_try = 0.0
        self._missed: dict[str, float] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._served)

    def get(self, name: str) -> WSGIApplication | None:
        entry = self._served.get(name)
        if entry is None and self._may_reload(name):
            self.load()
            entry = self._served.get(name)
        return entry[1] if entry is not None else None

    def _may_reload(self, name: str) -> bool:
        """Whether a miss on ``name`` may read the store again (see the class docstring)."""
        now = time.monotonic()
        if not self._loaded:
            return now >= self._next_try
        if self._missed.get(name, 0.0) > now:
            return False
        if len(self._missed) >= self.MISSED_NAMES:
            self._missed.clear()
        self._missed[name] = now + self.RETRY_SECONDS
        return True

    def load(self) -> None:
        """Read the store's backends and serve them; keep the old set if it is down."""
        with self._lock:
            try:
                records = self.store.list_backends()
            except NotImplementedError:  # a store without stored backends
                records = []
            except StoreUnavailable as exc:
                self._next_try = time.monotonic() + self.RETRY_SECONDS
                logger.warning("stored backends not (re)loaded, the store is unavailable: %s",
                               exc)
                return
            served: dict[str, tuple[BackendRecord, WSGIApplication]] = {}
            for record in records:
                if record.name in self.configured:
                    continue
                old = self._served.get(record.name)
                if old is not None and _same(old[0], record):
                    served[record.name] = old
                    continue
                try:
                    served[record.name] = (record, self._build(record))
                except (ConfigError, ValueError) as exc:  # a record no validation made
                    logger.error("stored backend %r is not served: %s", record.name, exc)
            dropped = [app for name, (record, app) in self._served.items()
                       if served.get(name, (None, None))[1] is not app]
            self._served = served
            self._loaded = True
        for app in dropped:
            _close(app)

    def _build(self, record: BackendRecord) -> WSGIApplication:
        from .proxy import ProxyBackend

        settings = BackendSettings(name=record.name, url=record.url, timeout=record.timeout,
                                   connect_timeout=record.connect_timeout,
                                   strip_prefix=record.strip_prefix,
                                   pool_size=record.pool_size)
        return ProxyBackend(settings, signing_secret=self.signing_secret)

    def close(self) -> None:
        with self._lock:
            served, self._served = self._served, {}
        for _, app in served.values():
            _close(app)


def _same(old: BackendRecord, new: BackendRecord) -> bool:
    return (old.url, old.timeout, old.connect_timeout, old.strip_prefix, old.pool_size) == (
        new.url, new.timeout, new.connect_timeout, new.strip_prefix, new.pool_size)


def _close(app: object) -> None:
    close = getattr(app, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # releasing is best effort; a close must never fail the caller
            logger.exception("closing backend %r failed", app)
