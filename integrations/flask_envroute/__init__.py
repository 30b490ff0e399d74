"""``flask_envroute``: Stripe-style test/live API keys for a Flask app.

::

    from flask import Flask
    from flask_envroute import EnvRoute, current_identity

    app = Flask(__name__)
    app.config["ENVROUTE"] = {"secret": "...", "routes": [{"when": {}, "backend": "app"}]}
    envroute = EnvRoute(app)          # or EnvRoute() and envroute.init_app(app) in a factory

    @app.get("/v1/charges")
    def charges():
        return {"customer": current_identity.metadata.get("customer")}

The extension wraps ``app.wsgi_app`` in an :class:`envroute.EnvRouter` whose backend
``app`` is this Flask app, so every request is authenticated and routed before Flask sees
it: a sandbox key can reach an in-process mock or an upstream URL without touching a
single view, and a refusal is ``application/problem+json``, never Flask's HTML error page.
Keys are managed with ``flask envroute keys …`` (the same flags as ``envroute keys``).
"""

from __future__ import annotations

from .extension import EnvRoute, EnvRouteState, get_state
from .identity import current_identity, get_identity

__all__ = ["EnvRoute", "EnvRouteState", "current_identity", "get_identity", "get_state"]
