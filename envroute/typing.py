"""Type aliases shared across envroute.

WSGI's types live in :mod:`_typeshed.wsgi`, which exists only for type checkers, so
they are imported under ``TYPE_CHECKING`` and re-exported here as strings: every module
imports its WSGI types from one place and none of them pays for it at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
else:  # pragma: no cover - only evaluated at run time, where the names are never used
    StartResponse = Callable[..., Any]
    WSGIApplication = Callable[..., Iterable[bytes]]
    WSGIEnvironment = dict

#: A response header list as WSGI passes it to ``start_response``.
HeaderList: TypeAlias = "list[tuple[str, str]]"

#: A JSON object as decoded from the config, a key's metadata or a token's claims.
JSONObject: TypeAlias = "dict[str, Any]"

__all__ = [
    "HeaderList",
    "JSONObject",
    "StartResponse",
    "WSGIApplication",
    "WSGIEnvironment",
]
