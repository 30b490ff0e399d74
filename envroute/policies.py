"""Policies applied after authentication and before any backend: scopes, rate limits.

A policy is any object with ``check(identity, environ) -> headers``: it raises a
:class:`~envroute.problems.Problem` to refuse, or returns response headers to add (such
as ``RateLimit-*``). The gateway runs every policy, in order, for every request.
"""

from __future__ import annotations

from typing import Protocol

from .identity import Identity
from .settings import Settings
from .typing import HeaderList, WSGIEnvironment


class Policy(Protocol):
    def check(self, identity: Identity, environ: WSGIEnvironment) -> HeaderList:
        """Refuse by raising ``Problem``; otherwise the headers to add to the response."""
        ...


def build_policies(settings: Settings) -> tuple[Policy, ...]:
    """The policies ``settings`` asks for, in the order they run."""
    return ()
