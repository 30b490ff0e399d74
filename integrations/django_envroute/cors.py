"""``envroute.W021``: a CORS middleware placed after ``EnvRouteMiddleware``.

A browser's CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no
credential by design. When django-cors-headers (or any CORS middleware) sits after
envroute's middleware, envroute answers the preflight ``401 missing_credentials`` before
the CORS middleware can, and every cross-origin call from a browser fails while the same
request from curl works. The fix is the order: CORS first, then envroute.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning

from .conf import MIDDLEWARE

TAG = "envroute"


def _is_cors(path: str) -> bool:
    return "cors" in path.lower()


def check_cors_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if MIDDLEWARE not in middleware:
        return []
    position = middleware.index(MIDDLEWARE)
    late = [m for m in middleware[position + 1:] if isinstance(m, str) and _is_cors(m)]
    if not late:
        return []
    return [Warning(
        f"{late[0]!r} comes after {MIDDLEWARE!r} in MIDDLEWARE, so browsers' CORS "
        "preflight requests (which carry no API key) are refused with 401 before the "
        "CORS middleware can answer them.",
        hint=f"Move {late[0]!r} above {MIDDLEWARE!r}.", id="envroute.W021")]
