from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_envroute import EnvRoute, current_identity, get_state

from envroute import IssuedKey
from tests.integrations.conftest import text_app

#: Requests that reached a Flask view, so a test can tell that none did.
VIEW_CALLS: list[str] = []


def build_app(config: dict[str, Any] | None = None, **extension: Any) -> Flask:
    app = Flask(__name__)
    if config is not None:
        app.config["ENVROUTE"] = config
    extension.setdefault("backends", {"sandbox": text_app("sandbox")})

    @app.get("/v1/charges")
    def charges() -> dict[str, Any]:
        VIEW_CALLS.append("charges")
        return {"served_by": "flask", "key_id": current_identity.key_id,
                "environment": current_identity.environment,
                "metadata": dict(current_identity.metadata)}

    EnvRoute(app, **extension)
    return app


@pytest.fixture
def flask_app(base_config: dict[str, Any]) -> Iterator[Flask]:
    app = build_app(base_config)
    yield app
    get_state(app).store.close()


@pytest.fixture
def issue(flask_app: Flask) -> Callable[..., IssuedKey]:
    manager = get_state(flask_app).key_manager()

    def make(environment: str = "production", **kwargs: Any) -> IssuedKey:
        return manager.create(environment, **kwargs)

    return make
