"""Sandbox data in the same Django project: one database per environment, fenced (§18).

::

    DATABASE_ROUTERS = ["django_envroute.db.EnvironmentRouter"]
    ENVROUTE_DATABASES = {"sandbox": "sandbox", "production": "default"}  # env -> alias

During a request envroute admitted, every ORM read and write without an explicit
``.using()`` goes to the alias of the caller's environment (:class:`EnvironmentRouter`),
and any query that reaches another environment's database raises
:class:`CrossEnvironmentAccess` *before it runs*: an explicit ``.using()``, raw SQL on
``connections[alias]`` (Django's or :data:`connections` here), an object loaded from
the other database being saved. The middleware answers it ``403 environment_mismatch``;
every open transaction of the environments' databases is marked for rollback first, so
with ``ATOMIC_REQUESTS`` the request's writes are undone even if the view swallowed the
exception.

Outside a request (migrations, management commands, the shell) nothing is fenced and the
router has no opinion; :func:`using_environment` fences a block of code explicitly::

    with using_environment("sandbox"):
        Charge.objects.create(amount=100)      # written to the sandbox database

How: the router picks the alias; an execute wrapper installed on the environments'
connections (Django's ``connection.execute_wrapper`` mechanism) checks every statement.
Transaction control (``BEGIN``, ``SAVEPOINT``, ``COMMIT``, ``ROLLBACK``), which
``ATOMIC_REQUESTS`` issues on every database, and envroute's own tables (the
``django://`` key store) are outside the fence. WSGI only: the fence follows Django's
``request_started`` / ``request_finished`` on the request's thread.

Risk: SQL through a connection the app opens itself (``psycopg.connect``), caches keyed
without the environment, files and queues are not fenced; see docs/sandbox-data.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db import connections as django_connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from envroute import fence
from envroute.fence import CrossEnvironmentAccess
from envroute.problems import Problem

SETTING = "ENVROUTE_DATABASES"
ROUTER = "django_envroute.db.EnvironmentRouter"
#: Apps whose models are outside the fence: envroute's own key store.
EXEMPT_APPS = frozenset({"django_envroute"})
#: A refusal recorded while the request's code ran (a fence violation, an ``envroute_id``
#: of another environment): the middleware answers it, even when the exception was
#: swallowed by the view or turned into a page by Django.
PROBLEM_KEY = "django_envroute.problem"
_EXEMPT_SQL = re.compile(r"\s*(?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|END)\b", re.I)
_EXEMPT_TABLE = re.compile(r'["`]django_envroute_')


_parsed: list[tuple[object, Mapping[str, str], frozenset[str]]] = []


def _mapping() -> tuple[Mapping[str, str], frozenset[str]]:
    """``ENVROUTE_DATABASES`` and its aliases, parsed once per settings object (every
    query asks, so this must be cheap; ``override_settings`` gives a new object)."""
    raw = getattr(settings, SETTING, None)
    cached = _parsed[0] if _parsed else None
    if cached is not None and cached[0] is raw:
        return cached[1], cached[2]
    mapping: dict[str, str] = {}
    if isinstance(raw, Mapping):
        mapping = {str(k): v for k, v in raw.items() if isinstance(v, str)}
    _parsed[:] = [(raw, mapping, frozenset(mapping.values()))]
    return mapping, frozenset(mapping.values())


def databases() -> Mapping[str, str]:
    """``ENVROUTE_DATABASES``: environment name -> database alias (``{}`` when unset)."""
    return _mapping()[0]


def alias_for(environment: str) -> str | None:
    """The database alias of ``environment``, or ``None`` when it has none."""
    return databases().get(environment)


def _refuse(environment: str, alias: str) -> CrossEnvironmentAccess:
    """The violation: mark every open transaction for rollback, then the exception."""
    for name in set(databases().values()):
        if name in settings.DATABASES and django_connections[name].in_atomic_block:
            transaction.set_rollback(True, using=name)
    environ = fence.request_environ()
    if environ is not None:
        environ[PROBLEM_KEY] = Problem(
            "environment_mismatch", "the request touched another environment's data; "
            "nothing was read from it, and the request's open transactions were rolled back")
    own = alias_for(environment)
    where = f"its database is {own!r}" if own else f"{SETTING} gives it no database"
    return CrossEnvironmentAccess(f"code running for the {environment} environment used "
                                  f"the database {alias!r} ({where})")


def check_alias(alias: str, environment: str | None = None) -> None:
    """Raise :class:`CrossEnvironmentAccess` if ``alias`` is another environment's."""
    environment = environment if environment is not None else fence.current_environment()
    if environment is None:
        return
    mapping, aliases = _mapping()
    if alias in aliases and alias != mapping.get(environment):
        raise _refuse(environment, alias)


def _fence(execute: Callable[..., Any], sql: str, params: Any, many: bool,
           context: Mapping[str, Any]) -> Any:
    """The execute wrapper on every environment's connection: the last line of defence."""
    environment = fence.current_environment()
    if environment is not None and not (
            isinstance(sql, str) and (_EXEMPT_SQL.match(sql) or _EXEMPT_TABLE.search(sql))):
        check_alias(context["connection"].alias, environment)
    return execute(sql, params, many, context)


def install_fence() -> None:
    """Put the fence on this thread's connections of every environment's database.

    Inserted first, so it is the outermost wrapper and a ``with connection.execute_wrapper``
    block of the app (which pops the last wrapper) never removes it. Idempotent.
    """
    for alias in set(databases().values()):
        if alias not in settings.DATABASES:
            continue  # reported by `manage.py check` (envroute.E018)
        wrappers = django_connections[alias].execute_wrappers
        if _fence not in wrappers:
            wrappers.insert(0, _fence)


def on_request_started(*, environ: Any = None, **kwargs: Any) -> None:
    """``request_started``: bind the fence (and the ``envroute_id`` converter) to this
    request; Django's WSGI handler and test client send it with the environ."""
    if environ is None:
        fence.leave_request()
        return
    if databases():
        install_fence()
    fence.enter_request(environ)


def on_request_finished(**kwargs: Any) -> None:
    fence.leave_request()


@contextmanager
def using_environment(name: str) -> Iterator[None]:
    """Fence a block of code to ``name``'s database, as a request of ``name`` is.

    For scripts, Celery tasks and tests. Inside a request, only the request's own
    environment may be chosen (another raises :class:`CrossEnvironmentAccess`).
    """
    with fence.using_environment(name):
        install_fence()
        yield


def _alias_of(instance: object) -> str | None:
    state = getattr(instance, "_state", None)
    return getattr(state, "db", None)


class EnvironmentRouter:
    """A database router: the caller's environment decides the alias, during a request.

    Outside a request and :func:`using_environment` it returns ``None`` (no opinion), so
    other routers and ``default`` apply as usual.
    """

    def _route(self, model: type[Model], hints: Mapping[str, Any]) -> str | None:
        if model._meta.app_label in EXEMPT_APPS:
            return None
        environment = fence.current_environment()
        if environment is None:
            return None
        alias = alias_for(environment)
        instance_alias = _alias_of(hints.get("instance"))
        if instance_alias is not None:
            check_alias(instance_alias, environment)
        if alias is None:
            raise _refuse(environment, DEFAULT_DB_ALIAS)
        return alias

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return self._route(model, hints)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return self._route(model, hints)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        environment = fence.current_environment()
        if environment is not None:
            for obj in (obj1, obj2):
                alias = _alias_of(obj)
                if alias is not None:
                    check_alias(alias, environment)
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None,
                      **hints: Any) -> bool | None:
        return None  # `migrate --database sandbox` builds every table in that database


class FencedConnections:
    """``connections[alias]`` that refuses another environment's alias at once."""

    def __getitem__(self, alias: str) -> BaseDatabaseWrapper:
        check_alias(alias)
        install_fence()
        return django_connections[alias]

    def current(self) -> BaseDatabaseWrapper:
        """The connection of the running code's environment (``default`` without one)."""
        environment = fence.current_environment()
        alias = alias_for(environment) if environment is not None else DEFAULT_DB_ALIAS
        if alias is None:
            raise _refuse(str(environment), DEFAULT_DB_ALIAS)
        return self[alias]


#: Fenced access to Django's connections: ``connections.current().cursor()`` for raw SQL.
connections = FencedConnections()

__all__ = ["CrossEnvironmentAccess", "EnvironmentRouter", "FencedConnections", "alias_for",
           "connections", "databases", "using_environment"]
