"""The authenticated caller, as backends see it in ``environ["envroute.identity"]``.

An :class:`Identity` is built once per verified key (and cached with it), is immutable,
and never holds the secret: handing it to application code, a log line or a template
cannot leak a credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Source = Literal["api_key", "jwt"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the key id, its environment, its metadata and where it came from.

    ``scopes`` is empty for an unrestricted key. ``display`` is the safe way to name the
    credential in logs (``sk_test_…a1b2``); it is never the secret.
    """

    key_id: str
    environment: str
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    source: Source = "api_key"
    scopes: frozenset[str] = frozenset()
    display: str = ""
    #: 0.2 (§12): the customer the key belongs to (or a token's ``customer_claim``)
    customer_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metadata, MappingProxyType):
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def attribute(self, name: str) -> Any:
        """What routes and rate-limit rules match on: the identity's own ``environment``,
        ``customer_id`` and ``key_id`` (reserved: never read from metadata), else the
        effective metadata's value."""
        if name == "environment":
            return self.environment
        if name == "customer_id":
            return self.customer_id
        if name == "key_id":
            return self.key_id
        return self.metadata.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "environment": self.environment,
            "customer_id": self.customer_id,
            "metadata": dict(self.metadata),
            "source": self.source,
            "scopes": sorted(self.scopes),
        }
