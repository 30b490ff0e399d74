"""The example's application factory: ``flask --app example_flask.app run``.

Sandbox keys (``sk_test_…``) are routed to :data:`example_flask.sandbox.sandbox_app`, an
in-process mock that never opens the database; production keys (``sk_live_…``) reach this
Flask app's views, which read and write ``instance/charges.db``. The routing happens in
envroute before Flask sees the request, so no view ever checks the environment itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_envroute import EnvRoute

from . import charges, sandbox  # modules, not apps: `flask --app` must find create_app

HERE = Path(__file__).resolve().parent
envroute = EnvRoute()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    instance = os.environ.get("EXAMPLE_FLASK_INSTANCE", str(HERE / "instance"))
    app = Flask(__name__, instance_path=os.path.abspath(instance))
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        CHARGES_DATABASE=os.path.join(app.instance_path, "charges.db"),
        ENVROUTE={
            # Set ENVROUTE_SECRET in production; the default is for trying the example.
            "secret": "${ENVROUTE_SECRET:-example-only-secret-0123456789-abcdefghij}",
            "store": {"url": "sqlite:///" + os.path.join(app.instance_path, "keys.db")},
            "routes": [
                {"when": {"environment": "sandbox"}, "backend": "sandbox"},
                {"when": {"environment": "production"}, "backend": "app"},
            ],
        },
    )
    if test_config:
        app.config.from_mapping(test_config)
    app.register_blueprint(charges.blueprint)
    app.teardown_appcontext(charges.close_db)
    envroute.init_app(app, backends={"sandbox": sandbox.sandbox_app})
    return app
