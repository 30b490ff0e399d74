"""Fixtures for the policy, token and PostgreSQL tests: stores of every kind, real services.

``key_store`` (and ``any_store_url``) is parametrised over every store, so each store test
runs against SQLite and against the real PostgreSQL (in a schema of its own, dropped
afterwards; skipped with the reason where PostgreSQL is absent, a failure under CI).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envroute import EnvRouter, KeyManager
from envroute.stores import KeyStore, open_store
from tests.support.apps import SECRET, text_app
from tests.support.services import require_postgres, require_redis

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def drop_schema(base_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name, dropped (with its tables) after the test."""
    base = require_postgres()
    schema = f"envroute_test_{secrets.token_hex(6)}"
    yield schema
    drop_schema(base, schema)


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    return with_schema(require_postgres(), pg_schema)


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture(params=STORES)
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def key_store(any_store_url: str) -> Iterator[KeyStore]:
    store = open_store(any_store_url)
    yield store
    store.close()


def config(store_url: str, **sections: Any) -> dict[str, Any]:
    """A config whose sandbox keys go to ``sandbox`` and production keys to ``app``."""
    return {
        "secret": SECRET,
        "store": {"url": store_url},
        "routes": [
            {"when": {"environment": "sandbox"}, "backend": "sandbox"},
            {"when": {"environment": "production"}, "backend": "app"},
        ],
        **sections,
    }


GatewayFactory = Callable[..., EnvRouter]


@pytest.fixture
def make_gateway() -> Iterator[GatewayFactory]:
    """Builds gateways from a config dict; closes their stores and policies afterwards."""
    built: list[EnvRouter] = []

    def make(settings: dict[str, Any], **kwargs: Any) -> EnvRouter:
        gateway = EnvRouter(text_app("production"), settings,
                            backends={"sandbox": text_app("sandbox")}, **kwargs)
        built.append(gateway)
        return gateway

    yield make
    for gateway in built:
        gateway.close()  # store, rate-limit storage, usage timer


def manager(gateway: EnvRouter) -> KeyManager:
    return KeyManager(gateway.store, gateway.settings)
