"""The store contract suite: every test here runs against every store.

As ``limits`` runs each storage test against every backend, the ``store`` fixture is
parametrised over SQLite, PostgreSQL (a schema of its own per test, dropped afterwards)
and the ``django://`` store on Django's SQLite and PostgreSQL databases. A store that is
absent here (no PostgreSQL server) is skipped with the reason, and fails under CI.

``other_process`` opens a second store on the same data, as another worker would.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from envroute.stores import KeyStore, open_store
from tests.support.services import require_postgres

from .django_setup import DJANGO_STORES

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    *DJANGO_STORES,
]


def drop_schema(base_url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind: str = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'keys.db'}"
    elif kind == "postgres":
        base = require_postgres()
        schema = f"envroute_test_{secrets.token_hex(6)}"
        yield f"{base}?schema={schema}"
        drop_schema(base, schema)
    else:
        if kind == "django-postgres":
            require_postgres()
        yield f"django://{kind.removeprefix('django-').replace('sqlite', 'default')}"


@pytest.fixture
def open_stores(store_url: str) -> Iterator[Callable[[], KeyStore]]:
    """Opens stores on the test's data (each one as another process would); closes them."""
    opened: list[KeyStore] = []

    def make() -> KeyStore:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_stores: Callable[[], KeyStore]) -> KeyStore:
    return open_stores()


@pytest.fixture
def other_process(open_stores: Callable[[], KeyStore]) -> KeyStore:
    return open_stores()
