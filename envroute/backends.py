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

from collections.abc import Iterable, Mapping

from .errors import ConfigError
from .imports import import_object
from .settings import BackendSettings, Settings
from .typing import StartResponse, WSGIApplication, WSGIEnvironment


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
