"""Reading the caller's identity from a Django request, typed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from envroute import Identity

if TYPE_CHECKING:
    from django.http import HttpRequest



def get_identity(request: HttpRequest) -> Identity | None:
    """The identity the middleware admitted (``request.envroute``), or None.

    None only on paths listed in ``ENVROUTE_EXEMPT_PATHS``, or without the middleware.
    """
    identity = getattr(request, "envroute", None)
    return identity if isinstance(identity, Identity) else None
