"""Wiring and system checks for sandbox data in the same project (§18).

:func:`ready` is called by ``django_envroute``'s ``AppConfig.ready()``: it registers the
``envroute_id`` converter, binds the fence to each request (``request_started`` /
``request_finished``), tells :mod:`envroute.ids` where the project's ``id_tag`` values
are, and registers the checks below.

====================  ===========================================================
``envroute.E018``     ``ENVROUTE_DATABASES`` names a database alias not in ``DATABASES``
``envroute.E019``     ``ENVROUTE_DATABASES`` is set but ``EnvironmentRouter`` is not in
                      ``DATABASE_ROUTERS`` (requests would all use ``default``)
``envroute.E020``     ``ENVROUTE_DATABASES`` is not a dict of environment -> alias
``envroute.W018``     a configured environment has no alias (its requests are refused
                      ``environment_mismatch`` whenever they touch a database)
====================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.core.signals import request_finished, request_started

from envroute import ConfigError, ids
from envroute.config import parse_settings
from envroute.settings import APP_BACKEND, Settings

from . import converters, db
from .conf import conf

EXAMPLE = 'ENVROUTE_DATABASES = {"sandbox": "sandbox", "production": "default"}'


_parsed: list[tuple[object, Settings]] = []


def _settings() -> Settings | None:
    """The project's settings for :mod:`envroute.ids` (its ``id_tag`` values).

    Parsed from ``settings.ENVROUTE`` (cached while that object stays the same), not
    taken from the gateway, so a script or a test can make ids without opening the store.
    """
    raw = conf.ENVROUTE
    if _parsed and _parsed[0][0] is raw:
        return _parsed[0][1]
    try:
        parsed = parse_settings(conf.config, source="settings.ENVROUTE",
                                builtin_backends=[APP_BACKEND])
    except (ConfigError, TypeError):  # reported by `manage.py check` (envroute.E001/E002)
        return None
    _parsed[:] = [(raw, parsed)]
    return parsed


def ready() -> None:
    converters.register()
    request_started.connect(db.on_request_started, dispatch_uid="django_envroute.fence")
    request_finished.connect(db.on_request_finished, dispatch_uid="django_envroute.fence")
    ids.add_settings_source(_settings)
    checks.register(check_databases, "envroute")


def check_databases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = getattr(settings, db.SETTING, None)
    if raw is None:
        return []
    if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return [Error(f"{db.SETTING} must be a dict of environment name -> database alias, "
                      f"not {raw!r}.", hint=f"For example: {EXAMPLE}", id="envroute.E020")]
    errors: list[CheckMessage] = []
    known = ", ".join(settings.DATABASES)
    for environment, alias in raw.items():
        if alias not in settings.DATABASES:
            errors.append(Error(
                f"{db.SETTING}[{environment!r}] names the database {alias!r}, which is not "
                "in DATABASES.", hint=f"Use one of: {known}", id="envroute.E018"))
    if db.ROUTER not in (getattr(settings, "DATABASE_ROUTERS", None) or ()):
        errors.append(Error(
            f"{db.SETTING} is set but {db.ROUTER!r} is not in DATABASE_ROUTERS, so every "
            "request would use the default database.",
            hint=f"DATABASE_ROUTERS = [{db.ROUTER!r}]", id="envroute.E019"))
    parsed = _settings()
    if parsed is None:  # envroute.E001 / E002 say what is wrong
        return errors
    for environment in parsed.environments:
        if environment not in raw:
            errors.append(CheckWarning(
                f"the environment {environment!r} has no database in {db.SETTING}: its "
                "requests are refused (403 environment_mismatch) whenever they use one.",
                hint=f"Add {environment!r}: '<alias>' to {db.SETTING}.", id="envroute.W018"))
    return errors
