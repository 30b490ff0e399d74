"""``current_identity``: who is calling, inside a view of an app wrapped by ``EnvRoute``.

The gateway puts an :class:`envroute.Identity` in ``environ["envroute.identity"]`` before
Flask sees the request; this module reads it back through Flask's ``request``. The
identity never holds the secret, so it is safe to log or return.
"""

from __future__ import annotations

from typing import cast

from flask import request
from werkzeug.local import LocalProxy

from envroute import Identity
from envroute.names import IDENTITY_KEY


def get_identity() -> Identity | None:
    """The current request's identity, or None outside a request routed by envroute."""
    identity = request.environ.get(IDENTITY_KEY)
    return identity if isinstance(identity, Identity) else None


def _require_identity() -> Identity:
    identity = get_identity()
    if identity is None:
        raise RuntimeError("no envroute identity on this request: is the app wrapped by "
                           "EnvRoute, and was the request routed to the backend 'app'?")
    return identity


#: The current request's :class:`~envroute.Identity` (``key_id``, ``environment``,
#: ``metadata``, ``source``); a RuntimeError outside a request that envroute admitted.
current_identity: Identity = cast(Identity, LocalProxy(_require_identity))
