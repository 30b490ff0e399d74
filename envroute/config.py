"""Configuration: TOML or a dict in, frozen :class:`~envroute.settings.Settings` out.

Everything is validated here, once, at start-up: unknown keys, bad values, a route to an
undefined backend, broken TOML, an unset ``${VAR}``. Each failure is one
:class:`~envroute.errors.ConfigError` naming the file, the dotted key and the reason, so a
misconfigured gateway never starts, and a started one never validates per request.

``${VAR}`` and ``${VAR:-default}`` expand from the process environment inside any string
value (``$${`` is a literal ``${``). The same schema is accepted as a dict from Django's
``settings.ENVROUTE``, Flask's ``app.config["ENVROUTE"]`` and ``EnvRouter.from_config``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .keys import PREFIX_PATTERN
from .settings import (
    DEFAULT_PREFIXES,
    DEFAULT_STORE_URL,
    AuthSettings,
    BackendSettings,
    EnvironmentSettings,
    JwtSettings,
    RateLimitRule,
    RateLimitSettings,
    RouteSettings,
    Settings,
    When,
    frozen_map,
)

CONFIG_ENV_VAR = "ENVROUTE_CONFIG"
DEFAULT_CONFIG_FILE = "envroute.toml"
MIN_SECRET_LENGTH = 32

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
_SCOPE_PATTERN = re.compile(r"^(\*|[A-Z]+) (/\S*)$")
_SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105

JWT_ALGORITHMS = frozenset({
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES256K", "ES384", "ES512", "EdDSA",
})
STRATEGIES = ("moving-window", "fixed-window", "sliding-window-counter")


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"10m"``, ``"24h"``, ``"30d"`` or a number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s', '10m' or '30d'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration such as '5s', '10m' or '30d'")


class _Section:
    """One table of the config, read key by key; whatever is left at the end is unknown."""

    def __init__(self, data: object, path: str, source: str) -> None:
        self.path = path
        self.source = source
        if not isinstance(data, Mapping):
            raise self.error("expected a table", key="")
        self.data: dict[str, Any] = dict(data)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, reason: str, *, key: str | None = None) -> ConfigError:
        return ConfigError(reason, key=self.path if key == "" else self.key(key or ""),
                           source=self.source)

    def has(self, name: str) -> bool:
        return name in self.data

    def pop(self, name: str, default: Any = None) -> Any:
        return self.data.pop(name, default)

    def string(self, name: str, default: str = "", *, required: bool = False) -> str:
        if name not in self.data:
            if required:
                raise self.error("is required", key=name)
            return default
        value = self.data.pop(name)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {_kind(value)}", key=name)
        return value

    def duration(self, name: str, default: float) -> float:
        if name not in self.data:
            return default
        try:
            return parse_duration(self.data.pop(name))
        except ValueError as exc:
            raise self.error(str(exc), key=name) from None

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        if name not in self.data:
            return default
        value = self.data.pop(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"expected a whole number >= {minimum}, got {value!r}", key=name)
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.data.pop(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error("expected a list of strings", key=name)
        return tuple(value)

    def section(self, name: str) -> _Section:
        return _Section(self.data.pop(name, {}), self.key(name), self.source)

    def finish(self) -> None:
        if self.data:
            unknown = sorted(self.data)[0]
            raise self.error("unknown key", key=unknown)


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


# -- ${VAR} expansion ---------------------------------------------------------------


def expand_variables(value: Any, *, path: str = "", source: str = "<config>",
                     environ: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string of a config tree."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set and has no default "
                              f"(write ${{{name}:-default}} to give one)", key=path,
                              source=source)
        return _VARIABLE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: expand_variables(v, path=f"{path}.{k}" if path else str(k), source=source,
                                    environ=env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_variables(v, path=f"{path}[{i}]", source=source, environ=env)
                for i, v in enumerate(value)]
    return value


# -- loading --------------------------------------------------------------------------


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``--config``, else ``$ENVROUTE_CONFIG``, else ``./envroute.toml`` if it exists."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV_VAR):
        return Path(os.environ[CONFIG_ENV_VAR])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_file(path: str | os.PathLike[str], *, builtin_backends: Iterable[str] = ()) -> Settings:
    """Read, expand and validate a TOML config file (``builtin_backends``: see below)."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from None
    return parse_settings(data, source=source, builtin_backends=builtin_backends)


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    builtin_backends: Iterable[str] = (),
) -> Settings:
    """Validate a config tree (TOML-shaped) and compile it into :class:`Settings`.

    ``builtin_backends`` names backends given in Python rather than in config (the wrapped
    app is ``"app"``), so routes may point at them.
    """
    if isinstance(data, Settings):
        return data
    root = _Section(expand_variables(data, source=source), "", source)
    secret = root.string("secret", required=True)
    if len(secret) < MIN_SECRET_LENGTH:
        raise root.error(f"must be at least {MIN_SECRET_LENGTH} characters "
                         f"(make one with: {_SECRET_HINT})", key="secret")
    signing_secret = root.string("signing_secret")
    store = root.section("store")
    store_url = store.string("url", DEFAULT_STORE_URL)
    if "://" not in store_url:
        raise store.error("expected a URL such as sqlite:///envroute.db or "
                          "postgresql://host/db", key="url")
    store.finish()
    environments = _environments(root.section("environments"))
    auth = _auth(root.section("auth"))
    jwt = _jwt(root.section("jwt"), environments) if root.has("jwt") else None
    builtin = set(builtin_backends)
    backends = _backends(root.section("backends"), builtin)
    names = set(backends) | builtin
    routes = _routes(root, names)
    scopes = _scopes(root.section("scopes"))
    rate_limits = _rate_limits(root.section("rate_limits")) if root.has("rate_limits") else None
    root.finish()
    return Settings(
        secret=secret, signing_secret=signing_secret, store_url=store_url,
        environments=frozen_map(environments), auth=auth, jwt=jwt,
        backends=frozen_map(backends), routes=routes, rate_limits=rate_limits,
        scopes=frozen_map(scopes), source=source,
    )


# -- sections -------------------------------------------------------------------------


def _environments(section: _Section) -> dict[str, EnvironmentSettings]:
    names = list(section.data) or list(DEFAULT_PREFIXES)
    result: dict[str, EnvironmentSettings] = {}
    seen: dict[str, str] = {}
    for name in names:
        if not _NAME.match(name):
            raise section.error("an environment name is letters, digits, _ . -", key=name)
        table = section.section(name)
        default_prefix, default_restricted = DEFAULT_PREFIXES.get(name, ("", ""))
        prefix = table.string("prefix", default_prefix, required=not default_prefix)
        restricted = table.string("restricted_prefix", default_restricted)
        if not restricted:
            restricted = "r" + prefix[1:] if prefix.startswith("s") else "r" + prefix
        for key, value in (("prefix", prefix), ("restricted_prefix", restricted)):
            if not PREFIX_PATTERN.match(value):
                raise table.error(f"{value!r} is not a prefix: lower-case letters and digits "
                                  "in words that each end with '_', such as 'sk_test_'",
                                  key=key)
            if value in seen:
                raise table.error(f"{value!r} is already the prefix of {seen[value]}", key=key)
            seen[value] = f"environments.{name}"
        table.finish()
        result[name] = EnvironmentSettings(name, prefix, restricted)
    return result


def _auth(section: _Section) -> AuthSettings:
    header = section.string("header", "X-API-Key")
    if not _HEADER.match(header):
        raise section.error(f"{header!r} is not a header name", key="header")
    if header.lower() == "authorization":
        raise section.error("Authorization is always read; name another header", key="header")
    result = AuthSettings(
        header=header,
        query_param=section.string("query_param"),
        cache_ttl=section.duration("cache_ttl", 5.0),
    )
    section.finish()
    return result


def _jwt(section: _Section, environments: Mapping[str, EnvironmentSettings]) -> JwtSettings:
    algorithms = section.strings("algorithms")
    if not algorithms:
        raise section.error("is required: list the algorithms tokens may use, such as "
                            "['RS256']", key="algorithms")
    for algorithm in algorithms:
        if algorithm.lower() == "none":
            raise section.error("'none' is refused: unsigned tokens are never accepted",
                                key="algorithms")
        if algorithm not in JWT_ALGORITHMS:
            raise section.error(f"unknown algorithm {algorithm!r}", key="algorithms")
    symmetric = {a for a in algorithms if a.startswith("HS")}
    if symmetric and len(symmetric) != len(algorithms):
        raise section.error("mixes HS* with public-key algorithms, which allows algorithm "
                            "confusion; use one family", key="algorithms")
    jwks_url = section.string("jwks_url")
    public_keys = section.strings("public_keys")
    secret = section.string("secret")
    given = [k for k, v in (("jwks_url", jwks_url), ("public_keys", public_keys),
                            ("secret", secret)) if v]
    if len(given) != 1:
        raise section.error("set exactly one of jwks_url, public_keys or secret", key="")
    if symmetric and not secret:
        raise section.error("HS* algorithms need secret", key="secret")
    if secret and not symmetric:
        raise section.error("secret works only with HS* algorithms", key="secret")
    if jwks_url and not jwks_url.startswith(("https://", "http://")):
        raise section.error("expected an http(s) URL", key="jwks_url")
    metadata_claims = section.pop("metadata_claims", [])
    if isinstance(metadata_claims, list) and all(isinstance(c, str) for c in metadata_claims):
        claims = {c: c for c in metadata_claims}
    elif isinstance(metadata_claims, Mapping) and all(
        isinstance(v, str) for v in metadata_claims.values()
    ):
        claims = dict(metadata_claims)
    else:
        raise section.error("expected a list of claim names or a table {name = 'claim'}",
                            key="metadata_claims")
    result = JwtSettings(
        algorithms=algorithms, jwks_url=jwks_url, public_keys=public_keys, secret=secret,
        issuer=section.string("issuer"), audience=section.string("audience"),
        leeway=section.duration("leeway", 0.0),
        key_id_claim=section.string("key_id_claim", "sub"),
        environment_claim=section.string("environment_claim", "environment"),
        metadata_claims=frozen_map(claims), scopes_claim=section.string("scopes_claim"),
        customer_claim=section.string("customer_claim"),
    )
    section.finish()
    return result


def _backends(section: _Section, builtin: set[str]) -> dict[str, BackendSettings]:
    result: dict[str, BackendSettings] = {}
    for name in list(section.data):
        if not _NAME.match(name):
            raise section.error("a backend name is letters, digits, _ . -", key=name)
        if name in builtin:
            raise section.error(f"{name!r} is the application envroute wraps; "
                                "give this backend another name", key=name)
        table = section.section(name)
        url = table.string("url")
        app = table.pop("app", None)
        if bool(url) == (app is not None):
            raise table.error("set exactly one of url or app", key="")
        if isinstance(app, str) and ":" not in app:
            raise table.error(f"{app!r} is not an import string such as "
                              "'package.module:application'", key="app")
        if app is not None and not isinstance(app, str) and not callable(app):
            raise table.error("expected an import string or a WSGI application", key="app")
        if url and not url.startswith(("http://", "https://")):
            raise table.error(f"{url!r} is not an http:// or https:// URL", key="url")
        timeout = table.duration("timeout", 30.0)
        strip_prefix = table.string("strip_prefix")
        if strip_prefix and (not strip_prefix.startswith("/") or strip_prefix.endswith("/")):
            raise table.error("expected a path such as '/sandbox' (leading '/', no trailing '/')",
                              key="strip_prefix")
        result[name] = BackendSettings(
            name=name, url=url, app=app, timeout=timeout,
            connect_timeout=table.duration("connect_timeout", min(timeout, 5.0)),
            strip_prefix=strip_prefix, pool_size=table.integer("pool_size", 0),
        )
        table.finish()
    return result


def _when(section: _Section, name: str = "when") -> When:
    table = section.section(name)
    result: dict[str, frozenset[str]] = {}
    for key in list(table.data):
        value = table.pop(key)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise table.error("expected a string or a non-empty list of strings", key=key)
        result[key] = frozenset(values)
    return frozen_map(result)


def _routes(root: _Section, backends: set[str]) -> tuple[RouteSettings, ...]:
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
    routes = []
    for index, item in enumerate(raw):
        table = _Section(item, f"routes[{index}]", root.source)
        if not table.has("when"):
            raise table.error("is required (when = {} matches every key)", key="when")
        when = _when(table)
        name = table.string("name")
        targets = [k for k in ("backend", "split", "failover") if table.has(k)]
        if len(targets) != 1:
            raise table.error("set exactly one of backend, split or failover", key="")
        backend = ""
        split: dict[str, int] = {}
        failover: tuple[str, ...] = ()
        if targets == ["backend"]:
            backend = table.string("backend")
            _known(table, "backend", [backend], backends)
        elif targets == ["split"]:
            split_section = table.section("split")
            split = {k: split_section.integer(k, 0, minimum=1) for k in list(split_section.data)}
            if not split:
                raise table.error("needs at least one backend = weight", key="split")
            _known(table, "split", split, backends)
        else:
            failover = table.strings("failover")
            if len(failover) < 2 or len(set(failover)) != len(failover):
                raise table.error("expected two or more distinct backend names",
                                  key="failover")
            _known(table, "failover", failover, backends)
        table.finish()
        routes.append(RouteSettings(index=index, when=when, backend=backend,
                                    split=frozen_map(split), failover=failover, name=name))
    return tuple(routes)


def _known(table: _Section, key: str, names: Iterable[str], backends: set[str]) -> None:
    for name in names:
        if name not in backends:
            defined = ", ".join(sorted(backends)) or "none"
            raise table.error(f"backend {name!r} is not defined (defined: {defined})", key=key)


def _scopes(section: _Section) -> dict[str, tuple[str, ...]]:
    result = {}
    for name in list(section.data):
        patterns = section.strings(name)
        for pattern in patterns:
            if not _SCOPE_PATTERN.match(pattern):
                raise section.error(f"{pattern!r} is not 'METHOD /path' (METHOD may be *)",
                                    key=name)
        if not patterns:
            raise section.error("needs at least one 'METHOD /path' pattern", key=name)
        result[name] = patterns
    return result


def _rate_limits(section: _Section) -> RateLimitSettings:
    storage = section.string("storage", "memory://")
    if not storage.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise section.error("expected memory:// or a redis:// URL", key="storage")
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
        table = _Section(item, f"{section.path}.rules[{index}]", section.source)
        limit = table.string("limit", required=True)
        _check_limit(table, limit)
        per = table.string("per", "key")
        rules.append(RateLimitRule(index=index, limit=limit, per=per, when=_when(table)))
        table.finish()
    section.finish()
    return RateLimitSettings(storage=storage, strategy=strategy,  # type: ignore[arg-type]
                             on_storage_error=on_error, rules=tuple(rules))  # type: ignore[arg-type]


def _check_limit(table: _Section, limit: str) -> None:
    try:
        from limits import parse_many
    except ImportError:
        raise table.error("rate limits need the 'limits' package: "
                          "pip install 'envroute[ratelimit]'", key="limit") from None
    try:
        parse_many(limit)
    except ValueError:
        raise table.error(f"{limit!r} is not a limit such as '100/second;5000/hour'",
                          key="limit") from None
