"""Fixtures every test folder shares: a config, a real SQLite store, a key factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envroute import EnvRouter, IssuedKey, KeyManager
from envroute.stores.sqlite import SQLiteStore

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


def text_app(body: str) -> Callable[..., list[bytes]]:
    """A WSGI app answering ``body`` plus what it was told about the caller."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        identity = environ.get("envroute.identity")
        who = f" {identity.key_id} {identity.environment}" if identity else ""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{body}{who}".encode()]

    return app


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keys.db'}"


@pytest.fixture
def base_config(store_url: str) -> dict[str, Any]:
    """Sandbox keys to the ``sandbox`` backend, production keys to the wrapped app."""
    return {
        "secret": SECRET,
        "store": {"url": store_url},
        "routes": [
            {"when": {"environment": "sandbox"}, "backend": "sandbox"},
            {"when": {"environment": "production"}, "backend": "app"},
        ],
    }


@pytest.fixture
def router(base_config: dict[str, Any]) -> Iterator[EnvRouter]:
    gateway = EnvRouter(text_app("production"), base_config,
                        backends={"sandbox": text_app("sandbox")})
    yield gateway
    gateway.store.close()


@pytest.fixture
def make_key(router: EnvRouter) -> Callable[..., IssuedKey]:
    manager = KeyManager(router.store, router.settings)

    def make(environment: str = "sandbox", **kwargs: Any) -> IssuedKey:
        return manager.create(environment, **kwargs)

    return make


@pytest.fixture
def sqlite_store(store_url: str) -> Iterator[SQLiteStore]:
    store = SQLiteStore(store_url)
    yield store
    store.close()
