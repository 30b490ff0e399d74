"""Lints: configuration that is valid but cannot do what it says (``envroute check``, §17).

Validation (:mod:`envroute.config`) refuses what cannot work at all; these are warnings
about what works and is still almost certainly a mistake, the silent failures issue 12
was about: a customer's dedicated route placed after a generic one (it never matches), a
``when`` with a typo in an attribute name (``enviroment``, ``teir``) that nothing has, a
customer's metadata naming a backend that no ``backend_from`` route could send to.

``lint(settings, store) -> list[str]``: one line per finding, naming the route or rule by
its config key. ``envroute check`` prints them and exits 1 with ``--strict``. Reading the
store is a full scan of keys, customers and stored backends: run it from ``check``, never
on the request path. A store that does not offer customers or stored backends yet is
linted on what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .routing import allowed
from .settings import RequestCondition, RouteSettings, Settings
from .stores.base import BackendRecord, CustomerRecord, KeyRecord, KeyStore

__all__ = ["lint", "shadowed_routes"]

#: Attributes every identity has, whatever the store holds.
_ALWAYS = frozenset({"environment", "key_id", "key"})
T = TypeVar("T")


def lint(settings: Settings, store: KeyStore | None = None) -> list[str]:
    """Every warning about ``settings`` (and, with a store, about what it holds)."""
    warnings = shadowed_routes(settings.routes)
    if store is not None:
        keys = [k for k in store.list_keys() if k.revoked_at is None]
        customers = _optional(store.list_customers)
        stored = _optional(store.list_backends)
        warnings += _unknown_attributes(settings, keys, customers)
        warnings += _unreachable_backends(settings, keys, customers, stored)
    return warnings


def _optional(read: Callable[[], list[T]]) -> list[T]:
    try:
        return read()
    except NotImplementedError:
        return []


# -- routes that can never match ----------------------------------------------------------


def shadowed_routes(routes: Iterable[RouteSettings]) -> list[str]:
    """Routes that an earlier route always takes first."""
    earlier: list[RouteSettings] = []
    warnings = []
    for route in routes:
        for before in earlier:
            if _covers(before, route):
                warnings.append(f"{_label(route)} can never match: {_label(before)} before "
                                "it matches every request it would (move it up, or narrow "
                                f"{_label(before)})")
                break
        earlier.append(route)
    return warnings


def _label(route: RouteSettings) -> str:
    key = f"routes[{route.index}]"
    return f"{key} ({route.name})" if route.name else key


def _covers(first: RouteSettings, later: RouteSettings) -> bool:
    """True when every identity and request ``later`` matches, ``first`` takes."""
    if first.backend_from:
        return False  # it lets identities without the attribute through
    for name, values in first.when.items():
        if name not in later.when or not later.when[name] <= values:
            return False
    return _request_covers(first.request, later.request)


def _request_covers(first: RequestCondition | None, later: RequestCondition | None) -> bool:
    if first is None:
        return True
    if later is None:
        return False
    methods = set(first.methods) | ({"HEAD"} if "GET" in first.methods else set())
    if first.methods and (not later.methods or not later.methods <= methods):
        return False
    if not first.paths:
        return True
    return bool(later.paths) and all(
        any(_path_covers(p, q) for p in first.paths) for q in later.paths)


def _path_covers(pattern: str, other: str) -> bool:
    """Certain cases only: equal patterns, or ``pattern`` ending in ``/**`` over a prefix."""
    if pattern == other:
        return True
    if pattern.endswith("/**"):
        prefix = pattern[:-3]
        return other == prefix or other.startswith(prefix + "/") or prefix == ""
    return False


# -- attributes nothing has ---------------------------------------------------------------


def _named_attributes(settings: Settings) -> list[tuple[str, str]]:
    """(config key, attribute) for every attribute a route or rule reads."""
    named = []
    for route in settings.routes:
        named += [(f"routes[{route.index}].when.{a}", a) for a in route.when]
        if route.backend_from:
            named.append((f"routes[{route.index}].backend_from", route.backend_from))
    if settings.rate_limits is not None:
        for rule in settings.rate_limits.rules:
            key = f"rate_limits.rules[{rule.index}]"
            named += [(f"{key}.when.{a}", a) for a in rule.when]
            named.append((f"{key}.per", rule.per))
            if rule.limit_from:
                named.append((f"{key}.limit_from", rule.limit_from))
    return named


def _unknown_attributes(settings: Settings, keys: list[KeyRecord],
                        customers: list[CustomerRecord]) -> list[str]:
    have = set(_ALWAYS)
    for record in keys:
        have.update(record.metadata)
        if record.customer_id:
            have.add("customer_id")
    for customer in customers:
        have.update(customer.metadata)
    if settings.jwt is not None:  # tokens carry attributes the store never sees
        have.update(settings.jwt.metadata_claims)
        if settings.jwt.customer_claim:
            have.add("customer_id")
    warnings = []
    for key, name in _named_attributes(settings):
        if name not in have:
            hint = ("request conditions go in request = {method = ..., path = ...}"
                    if name in ("method", "path") and ".when." in key
                    else "a typo? it matches nothing until one does")
            warnings.append(f"{key}: no key or customer in the store has {name!r} ({hint})")
    return warnings


# -- placement that cannot be honoured --------------------------------------------------


def _unreachable_backends(settings: Settings, keys: list[KeyRecord],
                          customers: list[CustomerRecord],
                          stored: list[BackendRecord]) -> list[str]:
    routes = [r for r in settings.routes if r.backend_from]
    if not routes:
        return []
    defined = set(settings.backends) | {b.name for b in stored} | {"app"}
    holders: list[tuple[str, Mapping[str, Any]]] = [
        (f"customer {c.id}", c.metadata) for c in customers]
    holders += [(f"key {k.id}", k.metadata) for k in keys]
    warnings = []
    for attribute in sorted({r.backend_from for r in routes}):
        readers = [r for r in routes if r.backend_from == attribute]
        for holder, metadata in holders:
            value = metadata.get(attribute)
            if not isinstance(value, str) or not value:
                continue
            if value not in defined:
                warnings.append(f"{holder}: {attribute} = {value!r} names no configured or "
                                "stored backend (its requests get backend_unavailable)")
            elif not any(allowed(value, r.allow) for r in readers):
                patterns = sorted({p for r in readers for p in r.allow})
                warnings.append(f"{holder}: {attribute} = {value!r} is not admitted by the "
                                f"allow of any backend_from route ({', '.join(patterns)})")
    for backend in stored:
        if not any(allowed(backend.name, r.allow) for r in routes):
            warnings.append(f"stored backend {backend.name}: no backend_from route's allow "
                            "admits it, so no request can reach it")
    return warnings
