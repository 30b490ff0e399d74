"""Routes: from an identity (and the request) to the backend(s) that may serve it. No I/O.

Routes are tried in order and the first whose ``when`` and ``request`` (§14) match wins;
``when = {}`` is the only default. When nothing matches the request is refused with
``no_route``: there is no implicit fallback, so a sandbox key can never drift into
production because a route was forgotten. A ``split`` picks a backend by a stable hash of
the route and the key id, so a key gets the same backend in every process, on every host
and after a restart.

``backend_from = "ATTR"`` (§13) sends to the backend the identity's attribute names; such
a route matches only identities that have the attribute. A name ``allow`` does not admit
is ``backend_unavailable`` (logged with the name), never another backend. Whether the name
is a configured or stored backend is the request path's question, not the router's.

Cost: routing must not grow with the number of routes, because one route per customer is
the natural way to pin customers (5,000 routes cost about what 10 do). Each route is
filed under one of its equality ``when`` attributes (the one most routes share) in a dict
from value to route positions; a request looks up its own value in each such index, adds
the routes that have no indexed attribute, and tests only those candidates, in their
original order, so first-match order is exactly what a linear scan would give.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .identity import Identity
from .patterns import compile_path
from .problems import Problem
from .settings import RequestCondition, RouteSettings, When
from .typing import WSGIEnvironment

logger = logging.getLogger("envroute")

#: Up to this many routes without an indexed attribute are copied into every bucket.
_PREMERGE_AT_MOST = 32
#: Remembered decisions (one per cached identity); past this the memo starts again.
_MEMO_MAX = 100_000


def _text(value: object) -> str | None:
    """An attribute's value as ``when`` compares it (None: cannot match)."""
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else str(value)


def matches(when: When, identity: Identity) -> bool:
    """True if every ``when`` entry equals (or is one of) the identity's attribute."""
    for name, allowed_values in when.items():
        value = _text(identity.attribute(name))
        if value is None or value not in allowed_values:
            return False
    return True


def allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``allow`` admits a backend name (no patterns: any name)."""
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


class RequestMatcher:
    """A compiled ``request = {method, path}``: both must match (empty: any)."""

    __slots__ = ("methods", "paths")

    def __init__(self, condition: RequestCondition) -> None:
        methods = set(condition.methods)
        if "GET" in methods:
            methods.add("HEAD")  # as for scopes: HEAD is a GET without the body
        self.methods = frozenset(methods)
        self.paths: tuple[re.Pattern[str], ...] = tuple(compile_path(p)
                                                        for p in condition.paths)

    def __call__(self, environ: WSGIEnvironment) -> bool:
        if self.methods and environ.get("REQUEST_METHOD", "GET").upper() not in self.methods:
            return False
        if self.paths:
            path = environ.get("PATH_INFO", "") or "/"
            return any(p.fullmatch(path) for p in self.paths)
        return True


def compile_request(condition: RequestCondition | None) -> RequestMatcher | None:
    return RequestMatcher(condition) if condition is not None else None


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


class AttributeIndex:
    """Items filed by one equality attribute each, looked up in O(attributes) per call.

    Each item goes under its most selective attribute (the one with the most distinct
    values over all items: ``customer_id`` rather than ``environment``).

    Shared by the router and the rate-limit rules: ``candidates(identity)`` returns the
    positions of every item that *may* match, in ascending order; the caller still tests
    each one fully (the other ``when`` entries, ``request``, ``backend_from``).
    """

    def __init__(self, whens: Sequence[When]) -> None:
        shared = Counter(name for when in whens for name in when)
        distinct: dict[str, set[str]] = {}
        for when in whens:
            for name, values in when.items():
                distinct.setdefault(name, set()).update(values)
        indexes: dict[str, dict[str, list[int]]] = {}
        unindexed: list[int] = []
        for position, when in enumerate(whens):
            if not when:
                unindexed.append(position)
                continue
            name = max(when, key=lambda n: (len(distinct[n]), shared[n], n))
            index = indexes.setdefault(name, {})
            for value in when[name]:
                index.setdefault(value, []).append(position)
        self.unindexed = tuple(unindexed)
        # each bucket already holds the unindexed items, in order, so one hit needs no
        # merge; with many unindexed items (memory: buckets x items) they merge per call
        self._merged = len(unindexed) <= _PREMERGE_AT_MOST
        extra = unindexed if self._merged else []
        self.indexes: dict[str, dict[str, tuple[int, ...]]] = {
            name: {value: tuple(sorted({*bucket, *extra})) for value, bucket in index.items()}
            for name, index in indexes.items()}
        self._names = tuple(self.indexes.items())

    def candidates(self, identity: Identity) -> Sequence[int]:
        found: list[Sequence[int]] = []
        for name, index in self._names:
            value = _text(identity.attribute(name))
            if value is not None:
                hit = index.get(value)
                if hit is not None:
                    found.append(hit)
        if not found:
            return self.unindexed
        if len(found) == 1 and self._merged:
            return found[0]
        return sorted(set(self.unindexed).union(*found))


class Router:
    """Compiled routes; :meth:`route` is all the gateway calls per request."""

    def __init__(self, routes: tuple[RouteSettings, ...]) -> None:
        self.routes = routes
        self._splits: Mapping[int, _Split] = {r.index: _Split(r) for r in routes if r.split}
        #: the decision of every route that depends on neither the key nor an attribute
        self._fixed: Mapping[int, Decision] = {
            r.index: Decision(r, r.backend_names) for r in routes
            if not r.split and not r.backend_from}
        self._requests = tuple(compile_request(r.request) for r in routes)
        self._index = AttributeIndex([r.when for r in routes])
        #: decisions that depend on the identity alone, by ``id(identity)``: the identity,
        #: its decision and the decision's backends (the identity is kept beside them, so
        #: the id cannot be reused while the entry lives). Read-only outside this class:
        #: the request path reads it directly (:meth:`EnvRouter._admit`)
        self.memo: dict[int, tuple[Identity, Decision, tuple[str, ...]]] = {}

    def route(self, identity: Identity, environ: WSGIEnvironment | None = None) -> Decision:
        """The decision for this identity and request; ``Problem`` to refuse.

        An identity is built once per verified key and cached with it, and the routes never
        change for a router's life, so a decision no ``request`` condition took part in is
        remembered for that identity object: a cached key's later requests are one dict
        look-up (issue 14). A refusal is never remembered (it is decided afresh)."""
        memo = self.memo.get(id(identity))
        if memo is not None and memo[0] is identity:
            return memo[1]
        decision, fixed = self._decide(identity, environ)
        if fixed and identity.source == "api_key":  # a token's identity is new each time
            if len(self.memo) >= _MEMO_MAX:
                self.memo.clear()  # identities of keys long gone; rebuilt as they come
            self.memo[id(identity)] = (identity, decision, decision.backends)
        return decision

    def _decide(self, identity: Identity, environ: WSGIEnvironment | None
                ) -> tuple[Decision, bool]:
        """The decision, and whether it depends on the identity alone."""
        routes, requests = self.routes, self._requests
        fixed = True
        for position in self._index.candidates(identity):
            route = routes[position]
            if not matches(route.when, identity):
                continue
            matcher = requests[position]
            if matcher is not None:
                fixed = False  # this and every later outcome depends on the request
                if environ is None or not matcher(environ):
                    continue
            if route.backend_from:
                name = _text(identity.attribute(route.backend_from))
                if not name:
                    continue  # no such attribute: on to the next route (§13)
                if not allowed(name, route.allow):
                    logger.warning("route %s: backend %r named by %s is not allowed "
                                   "(allow = %s)", route.label, name[:64],
                                   route.backend_from, list(route.allow))
                    raise Problem("backend_unavailable",
                                  "the backend this key is placed on is not available")
                return Decision(route, (name,)), fixed
            constant = self._fixed.get(route.index)
            if constant is not None:
                return constant, fixed
            return Decision(route, (self._splits[route.index].choose(identity.key_id),)), fixed
        raise Problem("no_route", f"no route accepts keys of environment "
                      f"{identity.environment!r} with this key's metadata")
