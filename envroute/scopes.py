"""Restricted keys: what a scope allows, compiled once from ``[scopes]``.

A scope is a list of ``METHOD PATH`` patterns (contract §3)::

    [scopes]
    "charges:read" = ["GET /v1/charges", "GET /v1/charges/*"]
    "charges:write" = ["POST /v1/charges/**"]

``*`` is exactly one non-empty path segment, ``**`` (last only) is whatever follows,
including nothing (``/v1/charges/**`` also matches ``/v1/charges``); a METHOD of ``*``
is any method, and ``HEAD`` is allowed wherever ``GET`` is.

An identity with no scopes is unrestricted and passes. A restricted identity (an ``rk_``
key, or a JWT carrying the scopes claim) passes only if one of its scopes allows the
request; a scope name that the configuration does not define allows nothing (a token
may name scopes that belong to other services). Everything else is 403
``insufficient_scope``.

Security: ``PATH_INFO`` arrives percent-decoded but not normalised, so a restricted
identity's request whose path has a ``.`` or ``..`` segment is refused outright: a
backend that resolves ``/v1/charges/../admin`` must never see it through a scope that
only allows ``/v1/charges/*``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .identity import Identity
from .problems import Problem
from .typing import HeaderList, WSGIEnvironment

_SEGMENT = "[^/]+"


@dataclass(frozen=True, slots=True)
class ScopePattern:
    """One compiled ``METHOD PATH`` pattern."""

    methods: frozenset[str] | None  # None: any method
    path: re.Pattern[str]
    text: str

    def allows(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path.fullmatch(path) is not None


def compile_pattern(text: str) -> ScopePattern:
    """``"GET /v1/charges/*"`` -> a :class:`ScopePattern`; ``ValueError`` explains a bad one."""
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if not method or not path.startswith("/"):
        raise ValueError(f"{text!r} is not 'METHOD /path' (METHOD may be *)")
    methods: frozenset[str] | None = None
    if method != "*":
        method = method.upper()
        methods = frozenset({method, "HEAD"}) if method == "GET" else frozenset({method})
    segments = path[1:].split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "**":
            if index != len(segments) - 1:
                raise ValueError(f"{text!r}: '**' may only be the last segment")
            parts.append("(?:/.*)?")
        elif segment == "*":
            parts.append("/" + _SEGMENT)
        elif "*" in segment:
            raise ValueError(f"{text!r}: '*' must be a whole path segment")
        else:
            parts.append("/" + re.escape(segment))
    regex = "".join(parts)
    return ScopePattern(methods, re.compile(regex or "/"), text)


def compile_scopes(
    scopes: Mapping[str, tuple[str, ...]], source: str = "<config>"
) -> dict[str, tuple[ScopePattern, ...]]:
    """Compile every ``[scopes]`` entry; a bad pattern is a :class:`ConfigError`."""
    compiled: dict[str, tuple[ScopePattern, ...]] = {}
    for name, patterns in scopes.items():
        try:
            compiled[name] = tuple(compile_pattern(p) for p in patterns)
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"scopes.{name}", source=source) from None
    return compiled


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


class ScopePolicy:
    """The policy that keeps restricted identities inside their scopes."""

    def __init__(self, scopes: Mapping[str, tuple[str, ...]], source: str = "<config>") -> None:
        self.scopes = compile_scopes(scopes, source)

    def allows(self, scopes: frozenset[str], method: str, path: str) -> bool:
        """True if any of ``scopes`` allows ``method path`` (undefined scopes allow nothing)."""
        if _has_dot_segment(path):
            return False
        method = method.upper()
        for name in scopes:
            for pattern in self.scopes.get(name, ()):
                if pattern.allows(method, path):
                    return True
        return False

    def check(self, identity: Identity, environ: WSGIEnvironment) -> HeaderList:
        if not identity.scopes:
            return []
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        if not self.allows(identity.scopes, method, path):
            granted = ", ".join(sorted(identity.scopes))
            raise Problem("insufficient_scope",
                          f"{method} {path} is outside this credential's scopes ({granted})")
        return []
