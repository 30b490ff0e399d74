"""The matching sections of the configuration: ``[[routes]]``, ``[rate_limits]``, ``[scopes]``.

They share two matchers: ``when`` (identity attributes, §5) and ``request`` (method and
path, §14). Everything is checked here, at start-up, so nothing is first discovered when
the router or a policy is built: a ``when`` naming an unconfigured environment, a route to
an undefined backend, a bad method or path pattern, a limit string ``limits`` cannot read,
an empty ``per``, a scope pattern that does not compile (contract §5, §9, §12).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from .patterns import compile_path, normalise_method
from .settings import (
    RateLimitRule,
    RateLimitSettings,
    RequestCondition,
    RouteSettings,
    When,
    frozen_map,
)
from .table import Table

STRATEGIES = ("moving-window", "fixed-window", "sliding-window-counter")
#: An attribute ``when``/``per``/``backend_from``/``limit_from`` may name: a metadata name
#: (``--meta K=V`` cannot hold ``=``), ``environment``, ``customer_id`` or ``key_id``.
_ATTRIBUTE = re.compile(r"^[^\s=\x00-\x1f\x7f]{1,64}$")


def attribute(table: Table, name: str, *, required: bool = False, default: str = "") -> str:
    value = table.string(name, default, required=required)
    if (required or name in ("per",)) and not value:
        raise table.error("is empty: name an attribute such as 'key', 'environment', "
                          "'customer_id' or a metadata name", key=name)
    if value and not _ATTRIBUTE.match(value):
        raise table.error(f"{value!r} can never be set: an attribute name is 1-64 "
                          "characters without spaces, '=' or control characters", key=name)
    return value


def when(table: Table, environments: Iterable[str], name: str = "when") -> When:
    section = table.section(name)
    known = set(environments)
    result: dict[str, frozenset[str]] = {}
    for key in list(section.data):
        value = section.pop(key)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise section.error("expected a string or a non-empty list of strings", key=key)
        if not _ATTRIBUTE.match(key):
            raise section.error("can never be set: an attribute name is 1-64 characters "
                                "without spaces, '=' or control characters", key=key)
        if key == "environment":
            unknown = sorted(set(values) - known)
            if unknown:
                raise section.error(f"{unknown[0]!r} is not a configured environment "
                                    f"(configured: {', '.join(sorted(known))})", key=key)
        result[key] = frozenset(values)
    return frozen_map(result)


def request(table: Table) -> RequestCondition | None:
    """``request = {method = "POST" | [...], path = "/v1/**" | [...]}``, or None."""
    if not table.has("request"):
        return None
    section = table.section("request")
    methods = set()
    for method in section.strings("method"):
        try:
            methods.add(normalise_method(method))
        except ValueError as exc:
            raise section.error(str(exc), key="method") from None
    paths = section.strings("path")
    for path in paths:
        try:
            compile_path(path)
        except ValueError as exc:
            raise section.error(str(exc), key="path") from None
    section.finish()
    if not methods and not paths:
        raise table.error("needs method or path (or leave request out)", key="request")
    return RequestCondition(methods=frozenset(methods), paths=paths)


def routes(root: Table, backends: set[str], environments: Iterable[str]
           ) -> tuple[RouteSettings, ...]:
    raw = root.pop("routes", None)
    if raw is None:
        if len(backends) == 1:  # one backend: every authenticated request goes to it
            return (RouteSettings(index=0, when=frozen_map(), backend=next(iter(backends))),)
        if not backends:
            return ()
        raise root.error("is required when there is more than one backend: add [[routes]] "
                         "tables (when = {} matches every key)", key="routes")
    if not isinstance(raw, list):
        raise root.error("expected an array of tables: [[routes]]", key="routes")
    return tuple(_route(Table(item, f"routes[{index}]", root.source), index, backends,
                        environments) for index, item in enumerate(raw))


def _route(table: Table, index: int, backends: set[str], environments: Iterable[str]
           ) -> RouteSettings:
    if not table.has("when"):
        raise table.error("is required (when = {} matches every key)", key="when")
    matcher = when(table, environments)
    condition = request(table)
    name = table.string("name")
    targets = [k for k in ("backend", "split", "failover", "backend_from") if table.has(k)]
    if len(targets) != 1:
        raise table.error("set exactly one of backend, split, failover or backend_from",
                          key="")
    backend = ""
    split: dict[str, int] = {}
    failover: tuple[str, ...] = ()
    backend_from = ""
    allow: tuple[str, ...] = ()
    if targets == ["backend"]:
        backend = table.string("backend")
        _known(table, "backend", [backend], backends)
    elif targets == ["split"]:
        split_section = table.section("split")
        split = {k: split_section.integer(k, 0, minimum=1) for k in list(split_section.data)}
        if not split:
            raise table.error("needs at least one backend = weight", key="split")
        _known(table, "split", split, backends)
    elif targets == ["failover"]:
        failover = table.strings("failover")
        if len(failover) < 2 or len(set(failover)) != len(failover):
            raise table.error("expected two or more distinct backend names", key="failover")
        _known(table, "failover", failover, backends)
    else:
        backend_from = attribute(table, "backend_from", required=True)
        allow = table.strings("allow")
        for pattern in allow:
            if not pattern or any(c.isspace() for c in pattern):
                raise table.error(f"{pattern!r} is not a backend name pattern such as "
                                  "'dedicated-*'", key="allow")
    if table.has("allow"):
        raise table.error("applies only with backend_from", key="allow")
    table.finish()
    return RouteSettings(index=index, when=matcher, backend=backend, split=frozen_map(split),
                         failover=failover, name=name, backend_from=backend_from,
                         allow=allow, request=condition)


def _known(table: Table, key: str, names: Iterable[str], backends: set[str]) -> None:
    for name in names:
        if name not in backends:
            defined = ", ".join(sorted(backends)) or "none"
            hint = (" (a stored backend is reached through backend_from, never by name)"
                    if backends else "")
            raise table.error(f"backend {name!r} is not defined (defined: {defined}){hint}",
                              key=key)


def scopes(section: Table) -> dict[str, tuple[str, ...]]:
    from .scopes import compile_pattern

    result = {}
    for name in list(section.data):
        patterns = section.strings(name)
        if not patterns:
            raise section.error("needs at least one 'METHOD /path' pattern", key=name)
        for pattern in patterns:
            try:
                compile_pattern(pattern)
            except ValueError as exc:
                raise section.error(str(exc), key=name) from None
        result[name] = patterns
    return result


def rate_limits(section: Table, environments: Iterable[str]) -> RateLimitSettings:
    storage = section.string("storage", "memory://")
    if not storage.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise section.error("expected memory:// or a redis:// URL", key="storage")
    if storage.startswith("redis") and importlib.util.find_spec("redis") is None:
        raise section.error("redis:// rate limits need the redis package: "
                            "pip install 'envroute[redis]'", key="storage")
    if storage.startswith("redis"):
        try:  # the port is all redis-py would refuse, at every request's first count
            urlsplit(storage).port  # noqa: B018 - read for its ValueError
        except ValueError as exc:
            raise section.error(f"not a usable Redis URL: {exc}", key="storage") from None
    strategy = section.string("strategy", "moving-window")
    if strategy not in STRATEGIES:
        raise section.error(f"expected one of {', '.join(STRATEGIES)}", key="strategy")
    on_error = section.string("on_storage_error", "deny")
    if on_error not in ("deny", "allow"):
        raise section.error("expected 'deny' or 'allow'", key="on_storage_error")
    raw_rules = section.pop("rules", [])
    if not isinstance(raw_rules, list):
        raise section.error("expected an array of tables: [[rate_limits.rules]]", key="rules")
    rules = []
    for index, item in enumerate(raw_rules):
        table = Table(item, f"{section.path}.rules[{index}]", section.source)
        limit = table.string("limit", required=True)
        check_limit(table, limit)
        rules.append(RateLimitRule(
            index=index, limit=limit, per=attribute(table, "per", default="key"),
            when=when(table, environments), request=request(table),
            limit_from=attribute(table, "limit_from")))
        table.finish()
    section.finish()
    return RateLimitSettings(storage=storage, strategy=strategy,  # type: ignore[arg-type]
                             on_storage_error=on_error, rules=tuple(rules))  # type: ignore[arg-type]


def check_limit(table: Table, limit: str) -> None:
    try:
        from limits import parse_many
    except ImportError:
        raise table.error("rate limits need the 'limits' package: "
                          "pip install 'envroute[ratelimit]'", key="limit") from None
    try:
        items = parse_many(limit)
    except ValueError:
        items = []
    if not items:
        raise table.error(f"{limit!r} is not a limit such as '100/second;5000/hour'",
                          key="limit")


def condition_map(condition: RequestCondition | None) -> Mapping[str, object]:
    """A request condition as JSON-ready data (``explain``, docs)."""
    if condition is None:
        return {}
    return {"method": sorted(condition.methods), "path": list(condition.paths)}
