"""Policies applied after authentication and before any backend: scopes, rate limits.

A policy is any object with ``check(identity, environ) -> headers``: it raises a
:class:`~envroute.problems.Problem` to refuse, or returns response headers to add (such
as ``RateLimit-*``). The gateway runs every policy, in order, for every request.

The order is deliberate: scopes first, so a request a restricted key may not make is
refused with 403 before it spends any of the key's rate limit; then rate limits.
``limits`` (and Redis) are imported only when ``[rate_limits]`` is configured.
"""

from __future__ import annotations

from typing import Protocol

from .identity import Identity
from .names import DRY_RUN_KEY
from .settings import Settings
from .typing import HeaderList, WSGIEnvironment

__all__ = ["DRY_RUN_KEY", "Policy", "build_policies"]


class Policy(Protocol):
    def check(self, identity: Identity, environ: WSGIEnvironment) -> HeaderList:
        """Refuse by raising ``Problem``; otherwise the headers to add to the response."""
        ...


def build_policies(settings: Settings) -> tuple[Policy, ...]:
    """The policies ``settings`` asks for, in the order they run.

    The scope policy is always present (it passes unrestricted identities at no cost),
    because restricted keys and scoped JWTs must never be let through merely because
    ``[scopes]`` is empty: with no scope defined, a restricted identity is allowed nothing.
    """
    from .scopes import ScopePolicy

    policies: list[Policy] = [ScopePolicy(settings.scopes, settings.source)]
    if settings.rate_limits is not None and settings.rate_limits.rules:
        from .ratelimit import RateLimitPolicy

        policies.append(RateLimitPolicy(settings.rate_limits, settings.source))
    return tuple(policies)
