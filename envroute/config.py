"""Configuration: TOML or a dict in, frozen :class:`~envroute.settings.Settings` out.

Everything is validated here, in one pass, at start-up: unknown keys, bad values, a route
to an undefined backend, broken TOML, an unset ``${VAR}``, and (0.2) everything a
component would otherwise first discover when it is built: scope patterns, backend and
store URLs, JWT keys and secrets, limit strings, ``per``, ``when`` environments, request
methods and patterns. ``EnvRouter``, ``envroute check`` and Django's ``manage.py check``
all call :func:`parse_settings`, so none of them says "ok" about a config the server would
then refuse. Each failure is one :class:`~envroute.errors.ConfigError` naming the file,
the dotted key and the reason.

``${VAR}`` and ``${VAR:-default}`` expand from the process environment inside any string
value (``$${`` is a literal ``${``). The same schema is accepted as a dict from Django's
``settings.ENVROUTE``, Flask's ``app.config["ENVROUTE"]`` and ``EnvRouter.from_config``.
A relative ``sqlite:///`` path is resolved against the TOML file's directory (the current
directory for a dict). The sections themselves are read in :mod:`envroute.sections` and
:mod:`envroute.rules`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import rules, sections
from .errors import ConfigError
from .sections import MIN_SECRET_LENGTH
from .settings import DEFAULT_STORE_URL, JwtSettings, Settings, frozen_map
from .table import Table, parse_duration

CONFIG_ENV_VAR = "ENVROUTE_CONFIG"
DEFAULT_CONFIG_FILE = "envroute.toml"

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

__all__ = ["CONFIG_ENV_VAR", "DEFAULT_CONFIG_FILE", "MIN_SECRET_LENGTH", "expand_variables",
           "find_config_path", "load_file", "parse_duration", "parse_settings",
           "store_url_option"]


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
    return parse_settings(data, source=source, builtin_backends=builtin_backends,
                          base_dir=Path(path).absolute().parent)


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    builtin_backends: Iterable[str] = (),
    base_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """Validate a config tree (TOML-shaped) and compile it into :class:`Settings`.

    ``builtin_backends`` names backends given in Python rather than in config (the wrapped
    app is ``"app"``), so routes may point at them. ``base_dir`` is where a relative
    ``sqlite:///`` path starts (the TOML file's directory; default: the current one).
    """
    if isinstance(data, Settings):
        return data
    root = Table(expand_variables(data, source=source), "", source)
    secret, previous_secrets = sections.secrets(root)
    signing_secret = root.string("signing_secret")
    store_url = _store(root.section("store"), base_dir)
    environments = sections.environments(root.section("environments"))
    auth = sections.auth(root.section("auth"))
    jwt = sections.jwt(root.section("jwt")) if root.has("jwt") else None
    builtin = set(builtin_backends)
    backends = sections.backends(root.section("backends"), builtin)
    names = set(backends) | builtin
    routes = rules.routes(root, names, environments)
    scopes = rules.scopes(root.section("scopes"))
    rate_limits = (rules.rate_limits(root.section("rate_limits"), environments)
                   if root.has("rate_limits") else None)
    health = sections.health(root.section("health"))
    logging = sections.logging_(root.section("logging"))
    metrics = sections.metrics(root.section("metrics"), health_path=health.path)
    events = sections.events(root.section("events"))
    root.finish()
    settings = Settings(
        secret=secret, signing_secret=signing_secret, store_url=store_url,
        environments=frozen_map(environments), auth=auth, jwt=jwt,
        backends=frozen_map(backends), routes=routes, rate_limits=rate_limits,
        scopes=frozen_map(scopes), source=source, previous_secrets=previous_secrets,
        health=health, logging=logging, metrics=metrics, events=events,
    )
    if jwt is not None:
        _check_jwt_keys(jwt, settings)
    return settings


ConfigSource = Settings | Mapping[str, Any] | str | os.PathLike[str] | None


def load_settings(config: ConfigSource, builtin: Iterable[str] = ()) -> Settings:
    """Settings from a path, a dict or ``None`` (``$ENVROUTE_CONFIG`` / ``./envroute.toml``).

    Here rather than in :mod:`envroute.gateway` (which re-exports it) so that the CLI's
    store commands read the config without importing the request path (issue 14)."""
    if isinstance(config, Settings):
        return config
    if isinstance(config, Mapping):
        return parse_settings(config, source="<dict>", builtin_backends=builtin)
    path = find_config_path(config)
    if path is None:
        raise ConfigError("no configuration: pass a path or a dict (envroute: --config "
                          "PATH), set ENVROUTE_CONFIG, or create ./envroute.toml")
    return load_file(path, builtin_backends=builtin)


def store_url_option(url: str) -> str:
    """``--store URL`` checked as ``[store] url`` is: a relative SQLite path is relative to
    the current directory, a missing directory is one line naming it (:class:`ConfigError`)."""
    from .stores import registered_schemes
    from .urls import check_store_url, resolve_store_url

    try:
        check_store_url(url, registered_schemes())
        return resolve_store_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc), source="--store") from None


def _store(section: Table, base_dir: str | os.PathLike[str] | None) -> str:
    from .stores import registered_schemes
    from .urls import check_store_url, resolve_store_url

    url = section.string("url", DEFAULT_STORE_URL)
    try:
        check_store_url(url, registered_schemes())
        url = resolve_store_url(url, base_dir)
    except ValueError as exc:
        raise section.error(str(exc), key="url") from None
    section.finish()
    return url


def _check_jwt_keys(jwt: JwtSettings, settings: Settings) -> None:
    """Load the public keys and check the secret's length now, as the verifier would."""
    if importlib.util.find_spec("jwt") is None:
        raise ConfigError("[jwt] needs PyJWT: pip install 'envroute[jwt]'", key="jwt",
                          source=settings.source)
    from .tokens import build_token_verifier

    build_token_verifier(jwt, settings)
