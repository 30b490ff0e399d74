"""Real keys for the tests of your own app, and the pytest plugin (§18).

``make_key()`` creates a key in the store your app is configured with and returns its
secret, so a test calls your API exactly as a customer would::

    from envroute.testing import make_key

    def test_sandbox_sees_mock_data(client):
        key = make_key("sandbox", metadata={"tier": "free"})
        response = client.get("/v1/charges", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200

The configuration is found, in order: ``config=`` (a dict in the TOML schema, a path, or
:class:`~envroute.Settings`); Django's ``settings.ENVROUTE`` when Django is configured;
the current Flask app's ``EnvRoute`` (inside an app context); else as the ``envroute``
CLI finds it (``ENVROUTE_CONFIG``, then ``./envroute.toml``).

The pytest plugin (``pytest -p envroute.testing``, or ``addopts = -p envroute.testing``
under ``[pytest]`` in ``pytest.ini``) provides the fixture ``envroute_key``: a factory
with the same parameters whose keys are revoked when the test ends. Under pytest-django, request the
``db`` fixture (or mark the test ``django_db``) first, as for any database access.

Risk: these are real keys in the configured store. Point tests at a test store (a
temporary SQLite file, the test database) and never at production's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .config import ConfigSource, find_config_path, load_file, load_settings
from .errors import ConfigError
from .lifecycle import KeyManager
from .settings import APP_BACKEND, Settings
from .stores import open_store

Closer = Callable[[], None]
#: The keys' name, and the actor of their audit records.
ACTOR = "envroute.testing"


def _nothing() -> None:
    return None


def _route_backends(config: Mapping[str, Any]) -> set[str]:
    """Backends a config's routes name: in-process ones given in Python count as built."""
    names = {APP_BACKEND}
    for route in config.get("routes") or ():
        if isinstance(route, Mapping):
            names.update(str(n) for n in (route.get("backend") or "",) if n)
            names.update(str(n) for n in route.get("split") or {})
            names.update(str(n) for n in route.get("failover") or ())
    return names


def _from_django() -> KeyManager | None:
    try:
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured or getattr(settings, "ENVROUTE", None) is None:
        return None
    from django_envroute.gateway import get_key_manager

    return get_key_manager()


def _from_flask() -> KeyManager | None:
    try:
        from flask import current_app, has_app_context
    except ImportError:
        return None
    if not has_app_context() or "envroute" not in current_app.extensions:
        return None
    manager: KeyManager = current_app.extensions["envroute"].key_manager()
    return manager


def key_manager(config: ConfigSource = None) -> tuple[KeyManager, Closer]:
    """The key manager for ``config`` (found as :func:`make_key` says) and how to close
    the store it opened (a no-op for a store the framework owns)."""
    if config is None:
        manager = _from_django() or _from_flask()
        if manager is not None:
            return manager, _nothing
        path = find_config_path(None)
        if path is None:
            raise ConfigError("envroute.testing: no configuration: pass config=, set "
                              "ENVROUTE_CONFIG, or run inside a Django or Flask app")
        settings: Settings = load_file(path, builtin_backends=[APP_BACKEND])
    elif isinstance(config, Mapping):
        settings = load_settings(config, _route_backends(config))
    else:
        settings = load_settings(config, [APP_BACKEND])
    store = open_store(settings.store_url)
    return KeyManager(store, settings), store.close


def _create(manager: KeyManager, environment: str, metadata: Mapping[str, Any] | None,
            scopes: Iterable[str], customer: str | None) -> tuple[str, str]:
    issued = manager.as_actor(ACTOR).create(environment, metadata=metadata,
                                            scopes=tuple(scopes), name=ACTOR,
                                            customer_id=customer)
    return issued.record.id, issued.secret


def make_key(environment: str = "sandbox", metadata: Mapping[str, Any] | None = None,
             scopes: Iterable[str] = (), customer: str | None = None,
             config: ConfigSource = None) -> str:
    """Create a real key in the configured store and return its secret."""
    manager, close = key_manager(config)
    try:
        return _create(manager, environment, metadata, scopes, customer)[1]
    finally:
        close()


class KeyFactory:
    """What the ``envroute_key`` fixture gives: ``envroute_key(...)`` -> a secret; every
    key it made is revoked by :meth:`revoke_all` (the fixture's teardown)."""

    def __init__(self) -> None:
        self.made: list[tuple[ConfigSource, str]] = []

    def __call__(self, environment: str = "sandbox",
                 metadata: Mapping[str, Any] | None = None, scopes: Iterable[str] = (),
                 customer: str | None = None, config: ConfigSource = None) -> str:
        manager, close = key_manager(config)
        try:
            key_id, secret = _create(manager, environment, metadata, scopes, customer)
        finally:
            close()
        self.made.append((config, key_id))
        return secret

    def revoke_all(self) -> None:
        for config, key_id in self.made:
            manager, close = key_manager(config)
            try:
                manager.as_actor(ACTOR).revoke(key_id)
            finally:
                close()
        self.made.clear()


try:
    import pytest
except ImportError:  # make_key works without pytest; the fixture needs it
    pass
else:

    @pytest.fixture
    def envroute_key() -> Iterator[KeyFactory]:
        """A factory of real keys (``envroute_key("sandbox", metadata=…)`` -> secret),
        revoked when the test ends."""
        factory = KeyFactory()
        yield factory
        factory.revoke_all()


__all__ = ["KeyFactory", "key_manager", "make_key"]
