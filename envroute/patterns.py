"""Path patterns shared by scopes (§3) and request conditions (§14).

``/v1/charges/*``: ``*`` is exactly one non-empty path segment; ``**`` (last segment only)
is whatever follows, including nothing, so ``/v1/charges/**`` also matches
``/v1/charges``. Everything else is literal. Patterns are compiled once, at start-up, into
anchored regular expressions; a malformed one is a ``ValueError`` whose message the
configuration turns into a :class:`~envroute.errors.ConfigError` naming the key.

Risk: a pattern is matched against ``PATH_INFO`` as the server decoded it. Callers that
grant access by it (scopes) must refuse dot segments first; see :mod:`envroute.scopes`.
"""

from __future__ import annotations

import re

_SEGMENT = "[^/]+"
#: An HTTP method as config may name it (RFC 9110 token, upper-cased by convention).
METHOD = re.compile(r"^[A-Z][A-Z0-9_-]*$")


def compile_path(pattern: str) -> re.Pattern[str]:
    """``"/v1/charges/*"`` -> an anchored regex; ``ValueError`` explains a bad pattern."""
    if not pattern.startswith("/"):
        raise ValueError(f"{pattern!r} is not a path pattern starting with '/'")
    if any(c.isspace() for c in pattern):
        raise ValueError(f"{pattern!r}: a path pattern holds no spaces")
    segments = pattern[1:].split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "**":
            if index != len(segments) - 1:
                raise ValueError(f"{pattern!r}: '**' may only be the last segment")
            parts.append("(?:/.*)?")
        elif segment == "*":
            parts.append("/" + _SEGMENT)
        elif "*" in segment:
            raise ValueError(f"{pattern!r}: '*' must be a whole path segment")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("".join(parts) or "/")


def normalise_method(method: str) -> str:
    """An upper-cased method; ``ValueError`` for anything that is not an HTTP token."""
    upper = method.strip().upper()
    if not METHOD.match(upper):
        raise ValueError(f"{method!r} is not an HTTP method such as 'GET' or 'POST'")
    return upper
