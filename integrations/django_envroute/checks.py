"""System checks (``manage.py check``) for envroute's settings.

``settings.ENVROUTE`` is run through :func:`envroute.config.parse_settings`, the one
validation pass the gateway does at start-up (scope patterns, backend and store URLs, JWT
keys, limit strings, ``per``, ``when`` environments, request conditions), so a mistake
shows up in ``check`` (and in ``runserver``, ``migrate``, CI) with the key that is wrong,
and ``check`` never says OK about settings the server would then refuse.

====================  ===========================================================
``envroute.E001``     ``settings.ENVROUTE`` is missing or not a dict
``envroute.E002``     ``settings.ENVROUTE`` is invalid (the message names the key)
``envroute.E003``     the middleware is not in ``MIDDLEWARE``
``envroute.E004``     ``ENVROUTE_EXEMPT_PATHS`` is not a list of paths starting with /
``envroute.E005``     the ``django://`` store names a database not in ``DATABASES``
``envroute.E006``     the store URL is unusable: unknown scheme, missing extra, or a
                      SQLite file whose directory does not exist
``envroute.W022``     the ``django://`` store's database is SQLite with
                      ``ATOMIC_REQUESTS`` and without ``transaction_mode``
                      ``IMMEDIATE``: a change in the admin can be refused with
                      "database is locked" while another process writes
====================  ===========================================================

``envroute.W021`` (a CORS middleware after envroute's) is :mod:`django_envroute.cors`'s;
``E018``-``E020`` and ``W018`` (sandbox databases) are :mod:`django_envroute.sandbox`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import django
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning

from envroute import ConfigError
from envroute.backends import load_app
from envroute.config import parse_settings
from envroute.settings import APP_BACKEND

from .conf import MIDDLEWARE, STORE_SCHEME, conf

TAG = "envroute"
EXAMPLE = ('ENVROUTE = {"secret": os.environ["ENVROUTE_SECRET"], '
           '"routes": [{"when": {}, "backend": "app"}]}')
#: SQLite transaction modes that take the write lock at ``BEGIN`` (Django 5.1+ ``OPTIONS``).
LOCKING_MODES = frozenset({"IMMEDIATE", "EXCLUSIVE"})


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every envroute check; registered in ``EnvrouteConfig.ready()``."""
    return [*_check_config(), *_check_middleware(), *_check_exempt_paths()]


def _check_config() -> list[CheckMessage]:
    raw = conf.ENVROUTE
    if not isinstance(raw, Mapping):
        found = "missing" if raw is None else f"a {type(raw).__name__}"
        return [Error(f"settings.ENVROUTE is {found}; it must be a dict with envroute's "
                      "configuration.", hint=f"For example: {EXAMPLE}", id="envroute.E001")]
    try:
        parsed = parse_settings(conf.config, source="settings.ENVROUTE",
                                builtin_backends=[APP_BACKEND])
        for backend in parsed.backends.values():  # the gateway imports these at start-up
            if backend.app is not None:
                load_app(backend, parsed.source)
    except ConfigError as exc:
        where = f"settings.ENVROUTE[{_subscript(exc.key)}]" if exc.key else "settings.ENVROUTE"
        if exc.key == "store.url":
            return [Error(f"{where}: {exc.reason}.",
                          hint="Use django:// (the project's database, the default), "
                               "sqlite:///path.db or postgresql://…", id="envroute.E006")]
        return [Error(f"{where}: {exc.reason}", hint=_hint(exc.key), id="envroute.E002")]
    scheme, _, _ = parsed.store_url.partition("://")
    if scheme == STORE_SCHEME:
        from .storecore import database_alias

        alias = database_alias(parsed.store_url)
        if alias not in settings.DATABASES:
            known = ", ".join(f"django://{a}" for a in settings.DATABASES)
            return [Error(f"settings.ENVROUTE['store']['url']: {parsed.store_url!r} names "
                          f"the database {alias!r}, which is not in DATABASES.",
                          hint=f"Use one of: {known}",
                          id="envroute.E005")]
        return _check_sqlite_transactions(alias)
    return []


def _check_sqlite_transactions(alias: str) -> list[CheckMessage]:
    """The keys' SQLite database with ``ATOMIC_REQUESTS`` and deferred transactions.

    Such a request's transaction reads first (the session, the user, the object); its
    first write must then upgrade a read lock, which SQLite refuses at once while another
    process writes (a gunicorn worker recording usage). The admin says "Not saved" then;
    a view of the project's own that changes keys through envroute gets the error.
    """
    database: Mapping[str, Any] = settings.DATABASES[alias]
    engine = str(database.get("ENGINE") or "")
    options = database.get("OPTIONS") or {}
    mode = str(options.get("transaction_mode") or "DEFERRED").upper() \
        if isinstance(options, Mapping) else "DEFERRED"
    if (not engine.endswith(("sqlite3", "spatialite")) or not database.get("ATOMIC_REQUESTS")
            or mode in LOCKING_MODES):
        return []
    fix = f'DATABASES[{alias!r}]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"'
    if django.VERSION < (5, 1):
        fix = f"Django 5.1 or later and {fix}, or ATOMIC_REQUESTS off for {alias!r},"
    return [CheckWarning(
        f"DATABASES[{alias!r}] holds envroute's keys on SQLite with ATOMIC_REQUESTS and "
        f"{mode} transactions: a change in the admin is refused ('database is locked') "
        "whenever another process is writing, such as a gunicorn worker recording usage.",
        hint=f"Set {fix} or use PostgreSQL.", id="envroute.W022")]


def _check_middleware() -> list[CheckMessage]:
    if MIDDLEWARE in (settings.MIDDLEWARE or ()):
        return []
    return [Error(f"{MIDDLEWARE!r} is not in MIDDLEWARE, so no request is authenticated.",
                  hint=f"Add {MIDDLEWARE!r} at the top of MIDDLEWARE.", id="envroute.E003")]


def _check_exempt_paths() -> list[CheckMessage]:
    value = conf.ENVROUTE_EXEMPT_PATHS
    valid = (not isinstance(value, str) and isinstance(value, Sequence)
             and all(isinstance(p, str) and p.startswith("/") for p in value))
    if valid:
        return []
    return [Error(f"ENVROUTE_EXEMPT_PATHS must be a list of path prefixes starting with "
                  f"'/', not {value!r}.", hint='For example: ENVROUTE_EXEMPT_PATHS = ["/admin/"]',
                  id="envroute.E004")]


def _subscript(dotted: str) -> str:
    """``backends.sandbox.url`` -> ``'backends']['sandbox']['url'``, to read as Python."""
    parts = []
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        parts.append(repr(name) + (f"][{index.rstrip(']')}" if index else ""))
    return "][".join(parts)


def _hint(key: str) -> str:
    section = key.split(".")[0].split("[")[0] if key else ""
    return (f"Fix {section!r} in settings.ENVROUTE; it takes the same keys as envroute.toml."
            if section else "settings.ENVROUTE takes the same keys as envroute.toml.")
