"""The ``django://`` store honours the KeyStore contract, on SQLite and on PostgreSQL.

Every test runs against each database: the test settings' ``default`` (SQLite) and, where
the server at 127.0.0.1:5432 answers, ``postgres`` (skipped with the reason otherwise, and
a failure under CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django_envroute.store import DjangoStore

from envroute import EnvRouter, KeyManager, KeyNotFound, KeyRecord, open_store
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


def digest(text: str) -> bytes:
    return hash_key(SECRET.encode(), text)


def test_create_then_lookup_get_and_list(store: DjangoStore) -> None:
    store.create(record(), digest("one"))
    match = store.lookup(digest("one"))
    assert match is not None
    assert match.record == record()
    assert match.key_hash == digest("one")
    assert match.secret_expires_at is None
    assert store.get("key_1") == record()
    assert store.list_keys() == [record()]
    assert store.lookup(digest("other")) is None


@pytest.mark.parametrize("operation", [
    pytest.param(lambda s: s.get("key_x"), id="get"),
    pytest.param(lambda s: s.revoke("key_x", NOW), id="revoke"),
    pytest.param(lambda s: s.roll("key_x", digest("n"), "wxyz", now=NOW, retire_at=NOW),
                 id="roll"),
])
def test_unknown_ids_raise_key_not_found(store: DjangoStore, operation: object) -> None:
    with pytest.raises(KeyNotFound):
        operation(store)  # type: ignore[operator]


def test_revoke_is_idempotent_and_keeps_the_first_time(store: DjangoStore) -> None:
    store.create(record(), digest("one"))
    assert store.revoke("key_1", NOW).revoked_at == NOW
    assert store.revoke("key_1", NOW + timedelta(hours=1)).revoked_at == NOW
    match = store.lookup(digest("one"))
    assert match is not None and match.record.revoked_at == NOW


def test_roll_adds_a_secret_and_retires_the_old_one(store: DjangoStore) -> None:
    store.create(record(), digest("one"))
    retire = NOW + timedelta(hours=24)
    rolled = store.roll("key_1", digest("two"), "wxyz", now=NOW, retire_at=retire)
    assert rolled.last4 == "wxyz"
    old, new = store.lookup(digest("one")), store.lookup(digest("two"))
    assert old is not None and old.secret_expires_at == retire
    assert new is not None and new.secret_expires_at is None
    assert new.record.id == "key_1"
    # a second roll retires every older secret no later than asked
    store.roll("key_1", digest("three"), "3333", now=NOW, retire_at=NOW)
    assert store.lookup(digest("one")).secret_expires_at == NOW  # type: ignore[union-attr]
    assert store.lookup(digest("two")).secret_expires_at == NOW  # type: ignore[union-attr]


def test_record_usage_only_moves_forward(store: DjangoStore) -> None:
    store.create(record(), digest("one"))
    later = NOW + timedelta(minutes=5)
    store.record_usage({"key_1": later})
    store.record_usage({"key_1": NOW})
    store.record_usage({})
    assert store.get("key_1").last_used_at == later


def test_the_gateway_authenticates_keys_kept_in_the_store(store: DjangoStore) -> None:
    config = {"secret": SECRET, "store": {"url": store.url}}
    router = EnvRouter(text_app("ok"), config)
    issued = KeyManager(router.store, router.settings).create("production")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/",
               "HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    assert router.admit(environ).identity.key_id == issued.record.id
    from django_envroute.models import APIKey, KeySecret

    row = KeySecret.objects.using(store.alias).get(key_id=issued.record.id)
    assert row.hash == digest(issued.secret).hex()  # only the keyed hash is stored
    saved = APIKey.objects.using(store.alias).get(pk=issued.record.id)
    assert issued.secret not in repr(saved.__dict__)


def test_django_is_the_default_store_unless_configured() -> None:
    from django_envroute.gateway import get_router

    assert isinstance(get_router().store, DjangoStore)
    assert get_router().settings.store_url == "django://default"
