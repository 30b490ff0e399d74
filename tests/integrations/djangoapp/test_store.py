"""What only the ``django://`` store does; the KeyStore contract itself (every method, on
Django's SQLite and PostgreSQL databases) is ``tests/stores``, run against every store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import OperationalError, ProgrammingError
from django.test import override_settings
from django_envroute.store import DjangoStore, connect_params, marker_path

from envroute import EnvRouter, KeyManager, KeyRecord, open_store
from envroute.errors import StoreUnavailable
from envroute.keys import hash_key
from tests.conftest import SECRET, text_app
from tests.support.services import require_postgres

ALIASES = [alias for alias in ("default", "postgres") if alias in settings.DATABASES]
pytestmark = pytest.mark.django_db(databases=ALIASES)
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=[pytest.param("default", id="sqlite"),
                        pytest.param("postgres", id="postgresql")])
def store(request: pytest.FixtureRequest) -> Iterator[DjangoStore]:
    if request.param == "postgres":
        require_postgres()
    store = open_store(f"django://{request.param}")
    assert isinstance(store, DjangoStore)
    assert store.alias == request.param
    yield store
    store.close()


def record(key_id: str = "key_1", **changes: object) -> KeyRecord:
    fields: dict[str, object] = {"id": key_id, "environment": "sandbox", "prefix": "sk_test_",
                                 "last4": "abcd", "created_at": NOW,
                                 "metadata": {"customer": "acme"}, "name": "CI",
                                 "scopes": ("charges:read",)}
    fields.update(changes)
    return KeyRecord(**fields)  # type: ignore[arg-type]


def test_naive_datetimes_come_back_aware_in_utc(store: DjangoStore) -> None:
    with override_settings(USE_TZ=False):
        store.create(record(expires_at=NOW + timedelta(days=1)), hash_key(b"k" * 32, "one"))
        found = store.get("key_1")
    assert found.created_at == NOW and found.created_at.tzinfo is not None
    assert found.expires_at == NOW + timedelta(days=1)
    assert found.to_dict()["created_at"] == "2030-01-02T03:04:05Z"


def test_the_gateway_authenticates_keys_kept_in_the_store(store: DjangoStore) -> None:
    config = {"secret": SECRET, "store": {"url": store.url}}
    router = EnvRouter(text_app("ok"), config)
    try:
        issued = KeyManager(router.store, router.settings).create("production")
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/",
                   "HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
        assert router.admit(environ).identity.key_id == issued.record.id
    finally:  # its timer and listener would hold sessions on the test database
        router.authenticator.close()
        router.store.close()
    from django_envroute.models import APIKey, KeySecret

    row = KeySecret.objects.using(store.alias).get(key_id=issued.record.id)
    assert row.hash == hash_key(SECRET.encode(), issued.secret).hex()  # only the keyed hash
    saved = APIKey.objects.using(store.alias).get(pk=issued.record.id)
    assert issued.secret not in repr(saved.__dict__)


def test_django_is_the_default_store_unless_configured() -> None:
    from django_envroute.gateway import get_router

    assert isinstance(get_router().store, DjangoStore)
    assert get_router().settings.store_url == "django://default"


@pytest.mark.parametrize(("database", "expected"), [
    pytest.param({"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/app/db.sqlite3"},
                 "/srv/app/db.sqlite3.changes", id="sqlite-file-beside-it"),
    pytest.param({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
                 "envroute-", id="in-memory-in-tmp"),
    pytest.param({"ENGINE": "django.db.backends.mysql", "NAME": "app", "HOST": "db"},
                 "envroute-", id="another-database-in-tmp"),
])
def test_where_the_change_marker_lives(database: dict[str, str], expected: str) -> None:
    path = marker_path(database)
    assert path.endswith(".changes") and expected in path


@pytest.mark.parametrize(("name", "home"), [
    pytest.param("CHANNEL", "storechanges", id="CHANNEL"),
    pytest.param("connect_params", "storechanges", id="connect_params"),
    pytest.param("marker_path", "storechanges", id="marker_path"),
    pytest.param("database_alias", "storecore", id="database_alias"),
])
def test_the_stores_names_import_from_where_they_always_did(name: str, home: str) -> None:
    """store.py was split by job (storecore, storechanges); ``django_envroute.store``
    still names what it held, and ``django_envroute.store:DjangoStore`` is the store."""
    import importlib

    from django_envroute import store

    assert getattr(store, name) is getattr(importlib.import_module(f"django_envroute.{home}"),
                                           name)
    assert name in store.__all__ and "DjangoStore" in store.__all__


def test_the_listener_connects_as_django_does() -> None:
    params = connect_params({"NAME": "app", "USER": "u", "PASSWORD": "p", "HOST": "db",
                             "PORT": 5433, "OPTIONS": {"sslmode": "require", "pool": True}})
    assert params == {"dbname": "app", "user": "u", "password": "p", "host": "db",
                      "port": "5433", "sslmode": "require", "connect_timeout": "3",
                      "application_name": "envroute"}


@pytest.mark.django_db(databases=["default", "sandbox"], transaction=True)
def test_a_change_on_sqlite_waits_for_another_processs_write() -> None:
    """A gateway worker writing its usage holds SQLite's write lock for a moment. A change
    made meanwhile (the admin, ``manage.py envroute_keys``) waits for it, where it was
    refused at once (``database is locked``) after its first read."""
    import sqlite3
    import threading

    from django.db import connections

    store = DjangoStore("django://sandbox")
    store.create(record(), hash_key(b"k" * 32, "waits"))
    other = sqlite3.connect(connections["sandbox"].settings_dict["NAME"],
                            isolation_level=None, timeout=30)
    other.execute("BEGIN IMMEDIATE")  # another process, in the middle of a write
    other.execute("UPDATE django_envroute_apikey SET name = name")
    outcome: dict[str, object] = {}

    def revoke() -> None:
        try:
            outcome["record"] = store.revoke("key_1", NOW)
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=revoke)
    thread.start()
    thread.join(0.5)  # refused at once before the fix; now waiting for the lock
    other.execute("COMMIT")
    other.close()
    thread.join(60)
    assert "error" not in outcome, outcome
    revoked = outcome["record"]
    assert isinstance(revoked, KeyRecord) and revoked.revoked_at == NOW
    store.close()


@pytest.mark.parametrize(("error", "hinted"), [
    pytest.param(OperationalError("no such table: django_envroute_apikey"), True,
                 id="sqlite-no-table"),
    pytest.param(ProgrammingError('relation "django_envroute_apikey" does not exist'), True,
                 id="postgresql-no-relation"),
    pytest.param(OperationalError("database is locked"), False, id="locked"),
    pytest.param(OperationalError("connection refused"), False, id="down"),
])
def test_migrate_is_suggested_only_for_a_missing_table(store: DjangoStore, error: Exception,
                                                      hinted: bool) -> None:
    with pytest.raises(StoreUnavailable) as raised, store._errors():
        raise error
    assert str(error) in str(raised.value)
    assert ("manage.py migrate" in str(raised.value)) is hinted
