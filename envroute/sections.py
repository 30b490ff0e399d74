"""The simple sections of the configuration: one function per table of §9.

:mod:`envroute.config` reads the file and expands ``${VAR}``; this module turns each
table into its frozen settings object with :class:`Table`, which reads a table key by key
and calls whatever is left over an unknown key. Routes, rate limits and scopes, which
share matchers, live in :mod:`envroute.rules`.

Every failure is a :class:`~envroute.errors.ConfigError` naming the file, the dotted key
and the reason: a misconfigured gateway never starts, and a started one never validates
per request. :class:`Table` itself lives in :mod:`envroute.table`.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping

from .keys import PREFIX_PATTERN
from .settings import (
    DEFAULT_ID_TAGS,
    DEFAULT_PREFIXES,
    AuthSettings,
    BackendSettings,
    EnvironmentSettings,
    EventsSettings,
    HealthSettings,
    JwtSettings,
    LoggingSettings,
    MetricsSettings,
    frozen_map,
)
from .table import Table, parse_duration

__all__ = ["Table", "parse_duration"]

MIN_SECRET_LENGTH = 32

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
_ID_TAG = re.compile(r"^[A-Za-z0-9]{1,32}$")
_IMPORT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(\))?$")
SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105

JWT_ALGORITHMS = frozenset({
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES256K", "ES384", "ES512", "EdDSA",
})


# -- secrets ----------------------------------------------------------------------------


def secrets(root: Table) -> tuple[str, tuple[str, ...]]:
    """``secret`` and ``previous_secrets``: each long enough, no two the same."""
    secret = root.string("secret", required=True)
    if len(secret) < MIN_SECRET_LENGTH:
        raise root.error(f"must be at least {MIN_SECRET_LENGTH} characters "
                         f"(make one with: {SECRET_HINT})", key="secret")
    previous = root.strings("previous_secrets")
    for index, old in enumerate(previous):
        key = f"previous_secrets[{index}]"
        if len(old) < MIN_SECRET_LENGTH:
            raise root.error(f"must be at least {MIN_SECRET_LENGTH} characters", key=key)
        if old == secret:
            raise root.error("is the current secret; list only secrets it replaced", key=key)
        if old in previous[:index]:
            raise root.error("appears twice", key=key)
    return secret, previous


# -- sections ---------------------------------------------------------------------------


def environments(section: Table) -> dict[str, EnvironmentSettings]:
    names = list(section.data) or list(DEFAULT_PREFIXES)
    result: dict[str, EnvironmentSettings] = {}
    seen: dict[str, str] = {}
    tags: dict[str, str] = {}
    for name in names:
        if not NAME.match(name):
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
        id_tag = table.string("id_tag", DEFAULT_ID_TAGS.get(name) or default_id_tag(name))
        if not _ID_TAG.match(id_tag):
            raise table.error(f"{id_tag!r} is not an id tag: 1-32 letters and digits ('_' "
                              "separates an id's parts), such as 'test' or 'live'",
                              key="id_tag")
        if id_tag in tags:
            raise table.error(f"{id_tag!r} is already the id tag of {tags[id_tag]}",
                              key="id_tag")
        tags[id_tag] = f"environments.{name}"
        table.finish()
        result[name] = EnvironmentSettings(name, prefix, restricted, id_tag)
    return result


def default_id_tag(name: str) -> str:
    """An environment's default id tag: its name, without ``_ . -`` (an id's separator)."""
    return re.sub(r"[^A-Za-z0-9]", "", name)[:32] or "env"


def auth(section: Table) -> AuthSettings:
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


def jwt(section: Table) -> JwtSettings:
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
    reserved = sorted(set(claims) & {"environment", "customer_id", "key_id"})
    if reserved:  # §3: the identity's own names, never metadata (environment_claim & co.)
        raise section.error(f"{reserved[0]!r} is reserved: a metadata name cannot be the "
                            "identity's own (environment_claim, customer_claim and "
                            "key_id_claim set those)", key="metadata_claims")
    for name in ("key_id_claim", "environment_claim"):
        if section.has(name) and not section.data[name]:
            raise section.error("must name a claim (leave it out for the default)", key=name)
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


def backends(section: Table, builtin: set[str]) -> dict[str, BackendSettings]:
    from .urls import check_backend_url

    result: dict[str, BackendSettings] = {}
    for name in list(section.data):
        if not NAME.match(name):
            raise section.error("a backend name is letters, digits, _ . -", key=name)
        if name in builtin:
            raise section.error(f"{name!r} is the application envroute wraps; "
                                "give this backend another name", key=name)
        table = section.section(name)
        url = table.string("url")
        app = table.pop("app", None)
        if bool(url) == (app is not None):
            raise table.error("set exactly one of url or app", key="")
        if isinstance(app, str) and not _IMPORT.match(app):
            raise table.error(f"{app!r} is not an import string such as "
                              "'package.module:application' or 'package:create_app()'",
                              key="app")
        if app is not None and not isinstance(app, str) and not callable(app):
            raise table.error("expected an import string or a WSGI application", key="app")
        if url:
            try:
                check_backend_url(url)
            except ValueError as exc:
                raise table.error(str(exc), key="url") from None
        timeout = table.duration("timeout", 30.0, positive=True)
        strip_prefix = table.string("strip_prefix")
        if strip_prefix and (not strip_prefix.startswith("/") or strip_prefix.endswith("/")):
            raise table.error("expected a path such as '/sandbox' (leading '/', no trailing '/')",
                              key="strip_prefix")
        result[name] = BackendSettings(
            name=name, url=url, app=app, timeout=timeout,
            connect_timeout=table.duration("connect_timeout", min(timeout, 5.0),
                                           positive=True),
            strip_prefix=strip_prefix, pool_size=table.integer("pool_size", 0),
        )
        table.finish()
    return result


def _exact_path(table: Table, name: str) -> str:
    path = table.string("path")
    if path and (not path.startswith("/") or any(c.isspace() or c in "?#*" for c in path)):
        raise table.error(f"{path!r} is not an exact path such as '/healthz'", key=name)
    return path


def health(section: Table) -> HealthSettings:
    result = HealthSettings(path=_exact_path(section, "path"))
    section.finish()
    return result


def logging_(section: Table) -> LoggingSettings:
    access = section.boolean("access", True)
    fmt = section.string("format", "text")
    if fmt not in ("text", "json"):
        raise section.error("expected 'text' or 'json'", key="format")
    section.finish()
    return LoggingSettings(access=access, format=fmt)  # type: ignore[arg-type]


def metrics(section: Table, *, health_path: str) -> MetricsSettings:
    path = _exact_path(section, "path")
    if path and path == health_path:
        raise section.error(f"{path!r} is already [health] path", key="path")
    token = section.string("token")
    if token and (not path or any(c.isspace() or ord(c) < 32 for c in token)):
        reason = ("is set but path is not" if not path
                  else "a bearer token holds no spaces or control characters")
        raise section.error(reason, key="token")
    if path and importlib.util.find_spec("prometheus_client") is None:
        raise section.error("metrics need prometheus_client: pip install "
                            "'envroute[metrics]'", key="path")
    section.finish()
    return MetricsSettings(path=path, token=token)


def events(section: Table) -> EventsSettings:
    hooks = section.strings("hooks")
    for index, hook in enumerate(hooks):
        if not _IMPORT.match(hook):
            raise section.error(f"{hook!r} is not an import string such as "
                                "'myproject.hooks:on_event'", key=f"hooks[{index}]")
    section.finish()
    return EventsSettings(hooks=hooks)
