"""The validated, frozen configuration every part of envroute is built from.

:mod:`envroute.config` turns TOML or a dict into these objects once, at start-up; after
that nothing re-reads or re-validates configuration per request. Each dataclass mirrors
one section of the contract's §9, with the contract's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

DEFAULT_STORE_URL = "sqlite:///envroute.db"
DEFAULT_PREFIXES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"sandbox": ("sk_test_", "rk_test_"), "production": ("sk_live_", "rk_live_")}
)
#: The backend name under which :class:`envroute.EnvRouter` registers the app it wraps.
APP_BACKEND = "app"


def frozen_map(data: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


#: The tag of Stripe-style object ids (``ch_test_…``) per default environment (§18).
DEFAULT_ID_TAGS: Mapping[str, str] = MappingProxyType({"sandbox": "test", "production": "live"})


@dataclass(frozen=True)
class EnvironmentSettings:
    name: str
    prefix: str
    restricted_prefix: str
    #: ``[environments.NAME] id_tag``: ``test``/``live`` for the defaults, else the name.
    id_tag: str = ""


@dataclass(frozen=True)
class AuthSettings:
    header: str = "X-API-Key"
    query_param: str = ""
    cache_ttl: float = 5.0


@dataclass(frozen=True)
class JwtSettings:
    algorithms: tuple[str, ...]
    jwks_url: str = ""
    public_keys: tuple[str, ...] = ()
    secret: str = ""
    issuer: str = ""
    audience: str = ""
    leeway: float = 0.0
    key_id_claim: str = "sub"
    environment_claim: str = "environment"
    #: metadata name -> claim name
    metadata_claims: Mapping[str, str] = field(default_factory=frozen_map)
    scopes_claim: str = ""
    #: 0.2: the claim that becomes ``identity.customer_id`` (empty: none)
    customer_claim: str = ""


@dataclass(frozen=True)
class BackendSettings:
    """One named backend: exactly one of ``url`` and ``app`` is set.

    ``app`` is an import string (``"package.module:attr"``) until
    :func:`envroute.backends.build_backends` loads it, or a WSGI callable given in Python.
    """

    name: str
    url: str = ""
    app: Any = None
    timeout: float = 30.0
    connect_timeout: float = 5.0
    strip_prefix: str = ""
    pool_size: int = 0  # 0: sized from the worker's threads


#: A ``when`` table: attribute name -> the values that match (one value: equality).
When = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class RequestCondition:
    """0.2 (§14): ``request = {method = …, path = …}`` on a route or a rate-limit rule.

    Empty ``methods`` / ``paths`` match any. Paths are §3's patterns (``*`` one segment,
    ``**`` the rest), as written; :mod:`envroute.routing` compiles them once.
    """

    methods: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteSettings:
    """One ``[[routes]]`` entry; exactly one of backend / split / failover is set."""

    index: int
    when: When
    backend: str = ""
    split: Mapping[str, int] = field(default_factory=frozen_map)
    failover: tuple[str, ...] = ()
    name: str = ""
    #: 0.2 (§13): send to the backend this identity attribute names ...
    backend_from: str = ""
    #: ... if one of these shell-style patterns admits it (empty: any backend)
    allow: tuple[str, ...] = ()
    #: 0.2 (§14): the request must match too
    request: RequestCondition | None = None

    @property
    def label(self) -> str:
        return self.name or f"routes[{self.index}]"

    @property
    def backend_names(self) -> tuple[str, ...]:
        if self.backend:
            return (self.backend,)
        if self.split:
            return tuple(self.split)
        return self.failover


@dataclass(frozen=True)
class RateLimitRule:
    index: int
    limit: str
    per: str = "key"
    when: When = field(default_factory=frozen_map)
    #: 0.2 (§14)
    request: RequestCondition | None = None
    #: 0.2 (§15): read the limit from this identity attribute; ``limit`` is the default
    limit_from: str = ""


@dataclass(frozen=True)
class RateLimitSettings:
    storage: str = "memory://"
    strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = (
        "moving-window"
    )
    on_storage_error: Literal["deny", "allow"] = "deny"
    rules: tuple[RateLimitRule, ...] = ()


@dataclass(frozen=True)
class HealthSettings:
    """0.2 (§17): ``[health] path`` answered by the gateway itself (empty: off)."""

    path: str = ""


@dataclass(frozen=True)
class LoggingSettings:
    """0.2 (§8): ``[logging]``: access lines to stderr when nothing else handles them."""

    access: bool = True
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class MetricsSettings:
    """0.2 (§17): ``[metrics] path`` (empty: off) and an optional bearer ``token``."""

    path: str = ""
    token: str = ""


@dataclass(frozen=True)
class EventsSettings:
    """0.2 (§16): ``[events] hooks``: import strings called with each audit event."""

    hooks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The whole configuration. ``source`` names where it came from, for error messages."""

    secret: str
    signing_secret: str = ""
    store_url: str = DEFAULT_STORE_URL
    environments: Mapping[str, EnvironmentSettings] = field(default_factory=frozen_map)
    auth: AuthSettings = field(default_factory=AuthSettings)
    jwt: JwtSettings | None = None
    backends: Mapping[str, BackendSettings] = field(default_factory=frozen_map)
    routes: tuple[RouteSettings, ...] = ()
    rate_limits: RateLimitSettings | None = None
    #: scope name -> its ``METHOD PATH`` patterns, as written
    scopes: Mapping[str, tuple[str, ...]] = field(default_factory=frozen_map)
    source: str = "<config>"
    #: 0.2 (§3): secrets keys may still be hashed under; re-hashed under ``secret`` on use
    previous_secrets: tuple[str, ...] = ()
    health: HealthSettings = field(default_factory=HealthSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    events: EventsSettings = field(default_factory=EventsSettings)

    @property
    def secret_key(self) -> bytes:
        return self.secret.encode()
