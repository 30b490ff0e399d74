"""A store made by envroute 0.1.0's own code is migrated in place on first use (§12).

The 0.1.0 store modules are kept verbatim in ``v0_1/`` (from ``git show c88b39e``): each
test makes a store with them, as a 0.1 deployment did, then opens it with this version.
The schema version is bumped once, the 0.1 keys keep working with no customer, and every
0.2 feature works on the migrated store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter
from envroute.keys import generate_secret, hash_key
from envroute.stores import open_store, schema
from envroute.stores.base import utcnow
from tests.support.apps import SECRET, text_app
from tests.support.services import require_postgres

from .conftest import drop_schema
from .records import customer
from .v0_1.stores.base import KeyRecord as KeyRecordV01


def make_v01_store(kind: str, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    if kind == "sqlite":
        from .v0_1.stores.sqlite import SQLiteStore

        url = f"sqlite:///{tmp_path / 'v01.db'}"
        old = SQLiteStore(url)
        yield url, old
        old.close()
    else:
        import secrets

        from .v0_1.stores.postgres import PostgresStore

        base = require_postgres()
        name = f"envroute_test_{secrets.token_hex(6)}"
        url = f"{base}?schema={name}"
        old = PostgresStore(url)
        yield url, old
        old.close()
        drop_schema(base, name)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def v01(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    yield from make_v01_store(request.param, tmp_path)


def issue_v01(old: Any, key_id: str, environment: str = "sandbox") -> str:
    """A key made the 0.1 way: 0.1's record and 0.1's store, the same keyed hash."""
    prefix = "sk_test_" if environment == "sandbox" else "sk_live_"
    secret = generate_secret(prefix)
    old.create(KeyRecordV01(id=key_id, environment=environment, prefix=prefix,
                            last4=secret[-4:], created_at=utcnow(),
                            metadata={"customer": "legacy"}),
               hash_key(SECRET.encode(), secret))
    return secret


def test_a_v01_store_is_migrated_in_place_and_its_keys_keep_working(
        v01: tuple[str, Any]) -> None:
    url, old = v01
    secret = issue_v01(old, "key_old")
    rolled_from = issue_v01(old, "key_rolled")
    new_secret = generate_secret("sk_test_")
    old.roll("key_rolled", hash_key(SECRET.encode(), new_secret), new_secret[-4:],
             now=utcnow(), retire_at=utcnow() + timedelta(hours=1))
    assert old.schema_version() == 1
    old.close()

    router = EnvRouter(text_app("ok"), {"secret": SECRET, "store": {"url": url}})
    try:
        client = Client(router)
        for credential in (secret, rolled_from, new_secret):
            response = client.get("/", headers={"Authorization": f"Bearer {credential}"})
            assert response.status_code == 200, response.get_data(as_text=True)
        store = router.store
        assert store.schema_version() == schema.VERSION  # type: ignore[attr-defined]
        record = store.get("key_old")
        assert (record.customer_id, record.disabled_at, record.status()) == (
            None, None, "active")
        assert dict(record.metadata) == {"customer": "legacy"}
        assert store.secret_fingerprints() == {"": 3}  # made before fingerprints: unknown
        # every 0.2 feature works on the migrated store
        store.create_customer(customer())
        assert store.set_key_disabled("key_old", utcnow()).status() == "disabled"
        assert [c.id for c in store.list_customers()] == ["acme"]
    finally:
        router.store.close()


def test_the_sqlite_version_is_the_pragma(tmp_path: Path) -> None:
    from .v0_1.stores.sqlite import SQLiteStore

    path = str(tmp_path / "v01.db")
    old = SQLiteStore(f"sqlite:///{path}")
    issue_v01(old, "key_old")
    old.close()
    url = f"sqlite:///{path}"
    with closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
    store = open_store(url)
    store.migrate()
    store.close()
    with closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
        columns = {row[1] for row in connection.execute("PRAGMA table_info(envroute_keys)")}
    assert {"customer_id", "disabled_at"} <= columns
