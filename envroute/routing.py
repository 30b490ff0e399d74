"""Routes: from an identity to the backend(s) that may serve it. Pure, no I/O.

Routes are tried in order and the first whose ``when`` matches wins; ``when = {}`` is the
only default. When nothing matches the request is refused with ``no_route``: there is no
implicit fallback, so a sandbox key can never drift into production because a route was
forgotten. A ``split`` picks a backend by a stable hash of the route and the key id, so a
key gets the same backend in every process, on every host and after a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import NamedTuple

from .identity import Identity
from .problems import Problem
from .settings import RouteSettings, When


def matches(when: When, identity: Identity) -> bool:
    """True if every ``when`` entry equals (or is one of) the identity's attribute."""
    for name, allowed in when.items():
        value = identity.attribute(name)
        if isinstance(value, bool) or value is None:
            return False
        if (value if isinstance(value, str) else str(value)) not in allowed:
            return False
    return True


class Decision(NamedTuple):
    """Where a request goes: the route that matched and the backends to try, in order."""

    route: RouteSettings
    backends: tuple[str, ...]


class _Split:
    """Weighted, sticky choice among backends."""

    def __init__(self, route: RouteSettings) -> None:
        self.salt = f"{route.index}:".encode()
        self.total = sum(route.split.values())
        self.buckets: list[tuple[int, str]] = []
        upper = 0
        for name, weight in route.split.items():
            upper += weight
            self.buckets.append((upper, name))

    def choose(self, key_id: str) -> str:
        digest = hashlib.sha256(self.salt + key_id.encode()).digest()
        point = int.from_bytes(digest[:8], "big") % self.total
        for upper, name in self.buckets:
            if point < upper:
                return name
        raise AssertionError("unreachable: point < total")


class Router:
    """Compiled routes; :meth:`route` is all the gateway calls per request."""

    def __init__(self, routes: tuple[RouteSettings, ...]) -> None:
        self.routes = routes
        self._splits: Mapping[int, _Split] = {r.index: _Split(r) for r in routes if r.split}
        #: the decision of every route that does not depend on the key: built once
        self._fixed: Mapping[int, Decision] = {
            r.index: Decision(r, r.backend_names) for r in routes if not r.split}

    def route(self, identity: Identity) -> Decision:
        for route in self.routes:
            if matches(route.when, identity):
                fixed = self._fixed.get(route.index)
                if fixed is not None:
                    return fixed
                return Decision(route, (self._splits[route.index].choose(identity.key_id),))
        raise Problem("no_route", f"no route accepts keys of environment "
                      f"{identity.environment!r} with this key's metadata")
