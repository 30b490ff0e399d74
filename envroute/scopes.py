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

Security: a scope is decided on what the backend will act on. ``PATH_INFO`` arrives
percent-decoded once but not normalised, and backends normalise further: Tomcat and Spring
drop ``;parameters`` from a segment (``/v1/files/..;/admin`` is ``/admin`` to them), some
decode again (``%2e%2e``), some split on ``\\``. A restricted identity's request whose path
holds a dot segment in any of those readings is refused outright, so a backend that
resolves it never sees it through a scope that only allows ``/v1/files/*``. And because
frameworks honour method-override headers (``X-HTTP-Method-Override``, ``X-HTTP-Method``,
``X-Method-Override``), those are removed from a restricted identity's request: the method
the scope allowed is the method the backend acts on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import ConfigError
from .identity import Identity
from .patterns import METHOD, compile_path
from .problems import Problem
from .typing import HeaderList, WSGIEnvironment

#: Headers through which frameworks let a client change the method (environ names).
METHOD_OVERRIDE_HEADERS = ("HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD",
                           "HTTP_X_METHOD_OVERRIDE")
#: How many further percent-decodings a backend might apply that we still look through.
_DECODE_ROUNDS = 3
_SEPARATORS = re.compile(r"[/\\]")


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
        if not METHOD.match(method):
            raise ValueError(f"{text!r} is not 'METHOD /path' (an upper-case METHOD, or *)")
        methods = frozenset({method, "HEAD"}) if method == "GET" else frozenset({method})
    try:
        regex = compile_path(path)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return ScopePattern(methods, regex, text)


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


def _is_dot(segment: str) -> bool:
    """``.`` / ``..``, also with ``;parameters`` (``..;``) or trailing blanks."""
    return segment.partition(";")[0].strip(" \t\0") in (".", "..")


def has_dot_segment(path: str) -> bool:
    """True if ``path`` holds a dot segment as any backend might read it.

    Looks at the path as given and after up to three more percent-decodings, splitting on
    ``/`` and ``\\`` and ignoring ``;parameters``: ``/a/..;/b``, ``/a/%2e%2e/b`` (seen
    after one more decoding), ``/a/.%252e/b``, ``/a\\..\\b`` all count.
    """
    for _ in range(_DECODE_ROUNDS + 1):
        if any(_is_dot(segment) for segment in _SEPARATORS.split(path)):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # still encoded after every round: refuse rather than guess


class ScopePolicy:
    """The policy that keeps restricted identities inside their scopes."""

    def __init__(self, scopes: Mapping[str, tuple[str, ...]], source: str = "<config>") -> None:
        self.scopes = compile_scopes(scopes, source)

    def allows(self, scopes: frozenset[str], method: str, path: str) -> bool:
        """True if any of ``scopes`` allows ``method path`` (undefined scopes allow nothing)."""
        if has_dot_segment(path):
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
        for name in METHOD_OVERRIDE_HEADERS:  # the backend acts on the method we check
            environ.pop(name, None)
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
        if raw and has_dot_segment(raw.partition("?")[0]):
            path = raw.partition("?")[0]  # refused below, named as the caller sent it
        if not self.allows(identity.scopes, method, path):
            granted = ", ".join(sorted(identity.scopes))
            raise Problem("insufficient_scope",
                          f"{method} {path} is outside this credential's scopes ({granted})")
        return []
