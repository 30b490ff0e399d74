"""``envroute.wsgi:app``: the standalone gateway for gunicorn and other WSGI servers.

    ENVROUTE_CONFIG=envroute.toml gunicorn envroute.wsgi:app

The config is read when this module is imported, so a broken config stops the server at
start-up (gunicorn reports the one-line ``ConfigError`` and exits) rather than failing
requests later.
"""

from __future__ import annotations

from .gateway import EnvRouter

app = EnvRouter()
application = app
