"""Fixtures every test folder shares: a config, a real SQLite store, a key factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envroute import EnvRouter, IssuedKey, KeyManager
from envroute.stores.sqlite import SQLiteStore

from .support.apps import SECRET, text_app

__all__ = ["SECRET", "text_app"]

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
