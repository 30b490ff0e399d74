"""The example's application factory: ``flask --app example_flask.app run``.

One app, one codebase, two environments: every key reaches the views in ``charges.py``,
and ``flask_envroute.db.session`` is bound to the database of the caller's environment
(``ENVROUTE_DATABASES``): ``instance/sandbox.db`` (mock data) for sandbox keys,
``instance/charges.db`` for live keys. No view checks the environment itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_envroute import EnvRoute

from . import charges  # a module, not an app: `flask --app` must find create_app

HERE = Path(__file__).resolve().parent
envroute = EnvRoute()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    instance = os.environ.get("EXAMPLE_FLASK_INSTANCE", str(HERE / "instance"))
    app = Flask(__name__, instance_path=os.path.abspath(instance))
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        ENVROUTE={
            # Set ENVROUTE_SECRET in production; the default is for trying the example.
            "secret": "${ENVROUTE_SECRET:-example-only-secret-0123456789-abcdefghij}",
            "store": {"url": "sqlite:///" + os.path.join(app.instance_path, "keys.db")},
            "routes": [
                {"when": {"environment": ["sandbox", "production"]}, "backend": "app"},
            ],
        },
        # One database per environment (any SQLAlchemy URL, such as postgresql+psycopg://…).
        ENVROUTE_DATABASES={
            "sandbox": "sqlite:///" + os.path.join(app.instance_path, "sandbox.db"),
            "production": "sqlite:///" + os.path.join(app.instance_path, "charges.db"),
        },
    )
    if test_config:
        app.config.from_mapping(test_config)
    envroute.init_app(app)  # first: it registers the envroute_id converter the routes use
    app.register_blueprint(charges.blueprint)
    charges.create_tables(app)
    return app
