"""Config validation: every mistake stops start-up with the file, the key and the reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from envroute import ConfigError, EnvRouter
from envroute.config import (
    expand_variables,
    load_file,
    parse_duration,
    parse_settings,
    store_url_option,
)
from envroute.settings import RequestCondition
from tests.support.apps import SECRET


def settings(**extra: Any) -> dict[str, Any]:
    return {"secret": SECRET, **extra}


BAD_CONFIGS = [
    pytest.param({}, "secret", "is required", id="missing-secret"),
    pytest.param({"secret": "short"}, "secret", "at least 32", id="short-secret"),
    pytest.param(settings(colour="blue"), "colour", "unknown key", id="unknown-top-level"),
    pytest.param(settings(auth={"cache_ttl": "soon"}), "auth.cache_ttl", "not a duration",
                 id="bad-duration"),
    pytest.param(settings(auth={"header": "X API"}), "auth.header", "not a header",
                 id="bad-header"),
    pytest.param(settings(auth={"bogus": 1}), "auth.bogus", "unknown key", id="unknown-auth"),
    pytest.param(settings(store={"url": "envroute.db"}), "store.url", "expected a URL",
                 id="store-not-url"),
    pytest.param(settings(environments={"sandbox": {"prefix": "SK-TEST"}}),
                 "environments.sandbox.prefix", "is not a prefix", id="bad-prefix"),
    pytest.param(settings(environments={"staging": {}}), "environments.staging.prefix",
                 "is required", id="custom-env-needs-prefix"),
    pytest.param(settings(environments={"a": {"prefix": "sk_a_"}, "b": {"prefix": "sk_a_"}}),
                 "environments.b.prefix", "already the prefix", id="duplicate-prefix"),
    pytest.param(settings(backends={"x": {}}), "backends.x", "exactly one of url or app",
                 id="backend-without-target"),
    pytest.param(settings(backends={"x": {"url": "ftp://h"}}), "backends.x.url",
                 "not an http", id="backend-bad-scheme"),
    pytest.param(settings(backends={"x": {"app": "nocolon"}}), "backends.x.app",
                 "import string", id="backend-bad-import-string"),
    pytest.param(settings(backends={"x": {"app": "a:b"}, "y": {"app": "a:b"}}), "routes",
                 "is required when there is more than one backend", id="routes-missing"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "nope"}]),
                 "routes[0].backend", "backend 'nope' is not defined", id="undefined-backend"),
    pytest.param(settings(backends={"x": {"app": "a:b"}}, routes=[{"backend": "x"}]),
                 "routes[0].when", "is required", id="route-without-when"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "x", "split": {"x": 1}}]),
                 "routes[0]", "exactly one of backend, split, failover or backend_from",
                 id="two-targets"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "split": {"x": 0}}]),
                 "routes[0].split.x", "whole number >= 1", id="zero-weight"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "failover": ["x"]}]),
                 "routes[0].failover", "two or more", id="failover-of-one"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {"tier": []}, "backend": "x"}]),
                 "routes[0].when.tier", "non-empty list", id="empty-any-of"),
    pytest.param(settings(scopes={"charges:read": ["read /v1/charges"]}),
                 "scopes.charges:read", "METHOD /path", id="bad-scope-pattern"),
    pytest.param(settings(jwt={"algorithms": ["none"], "secret": "s"}), "jwt.algorithms",
                 "'none' is refused", id="jwt-none"),
    pytest.param(settings(jwt={"algorithms": ["HS256", "RS256"], "secret": "s"}),
                 "jwt.algorithms", "algorithm confusion", id="jwt-mixed-families"),
    pytest.param(settings(jwt={"algorithms": ["RS256"]}), "jwt",
                 "exactly one of jwks_url, public_keys or secret", id="jwt-no-keys"),
    pytest.param(settings(rate_limits={"strategy": "leaky"}), "rate_limits.strategy",
                 "expected one of", id="bad-strategy"),
    pytest.param(settings(rate_limits={"storage": "redis://:pw@cache:notaport/0"}),
                 "rate_limits.storage", "not a usable Redis URL", id="bad-redis-port"),
    pytest.param(settings(rate_limits={"storage": "redis://cache:99999/0"}),
                 "rate_limits.storage", "not a usable Redis URL", id="redis-port-range"),
    pytest.param(settings(rate_limits={"rules": [{"limit": "lots"}]}),
                 "rate_limits.rules[0].limit", "not a limit", id="bad-limit"),
    # -- 0.2 ---------------------------------------------------------------------------
    pytest.param(settings(previous_secrets=["short"]), "previous_secrets[0]", "at least 32",
                 id="short-previous-secret"),
    pytest.param(settings(previous_secrets=[SECRET]), "previous_secrets[0]",
                 "is the current secret", id="previous-is-current"),
    pytest.param(settings(previous_secrets=["p" * 40, "p" * 40]), "previous_secrets[1]",
                 "appears twice", id="previous-twice"),
    pytest.param(settings(environments={"sandbox": {"id_tag": "te_st"}}),
                 "environments.sandbox.id_tag", "not an id tag", id="bad-id-tag"),
    pytest.param(settings(environments={"a": {"prefix": "sk_a_", "id_tag": "x"},
                                        "b": {"prefix": "sk_b_", "id_tag": "x"}}),
                 "environments.b.id_tag", "already the id tag", id="duplicate-id-tag"),
    pytest.param(settings(health={"path": "healthz"}), "health.path", "not an exact path",
                 id="health-relative"),
    pytest.param(settings(health={"path": "/h", "port": 1}), "health.port", "unknown key",
                 id="health-unknown"),
    pytest.param(settings(logging={"format": "xml"}), "logging.format", "'text' or 'json'",
                 id="logging-format"),
    pytest.param(settings(logging={"access": "yes"}), "logging.access", "true or false",
                 id="logging-access"),
    pytest.param(settings(metrics={"token": "t"}), "metrics.token", "path is not",
                 id="metrics-token-without-path"),
    pytest.param(settings(health={"path": "/m"}, metrics={"path": "/m"}), "metrics.path",
                 "already [health] path", id="metrics-is-health"),
    pytest.param(settings(events={"hooks": ["nocolon"]}), "events.hooks[0]",
                 "import string", id="events-bad-hook"),
    pytest.param(settings(store={"url": "mongodb://db/keys"}), "store.url",
                 "unknown store scheme 'mongodb'", id="store-unknown-scheme"),
    pytest.param(settings(store={"url": "sqlite:///no/such/dir/keys.db"}), "store.url",
                 "no/such/dir does not exist", id="store-missing-directory"),
    pytest.param(settings(backends={"x": {"url": "http://h:port/"}}), "backends.x.url",
                 "invalid port", id="backend-bad-port"),
    pytest.param(settings(backends={"x": {"url": "http://u:p@h/"}}), "backends.x.url",
                 "credentials", id="backend-credentials"),
    pytest.param(settings(backends={"x": {"url": "http://h/?a=1"}}), "backends.x.url",
                 "no query string", id="backend-query"),
    pytest.param(settings(scopes={"files": ["GET /v1/fi*es"]}), "scopes.files",
                 "whole path segment", id="scope-star-in-segment"),
    pytest.param(settings(scopes={"files": ["GET /v1/**/x"]}), "scopes.files",
                 "may only be the last", id="scope-double-star-inside"),
    pytest.param(settings(jwt={"algorithms": ["HS256"], "secret": "too-short"}), "jwt.secret",
                 "at least 32 bytes", id="jwt-short-secret"),
    pytest.param(settings(jwt={"algorithms": ["RS256"], "public_keys": ["not a pem"]}),
                 "jwt.public_keys[0]", "not a PEM public key", id="jwt-bad-public-key"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {"environment": "sandbx"}, "backend": "x"}]),
                 "routes[0].when.environment", "'sandbx' is not a configured environment",
                 id="when-unknown-environment"),
    pytest.param(settings(rate_limits={"rules": [{"limit": "1/second",
                                                  "when": {"environment": ["live"]}}]}),
                 "rate_limits.rules[0].when.environment", "not a configured environment",
                 id="rule-when-unknown-environment"),
    pytest.param(settings(rate_limits={"rules": [{"limit": "1/second", "per": ""}]}),
                 "rate_limits.rules[0].per", "is empty", id="empty-per"),
    pytest.param(settings(rate_limits={"rules": [{"limit": "1/second", "per": "a b"}]}),
                 "rate_limits.rules[0].per", "can never be set", id="per-never-set"),
    pytest.param(settings(rate_limits={"rules": [{"limit": "1/second",
                                                  "limit_from": "x=y"}]}),
                 "rate_limits.rules[0].limit_from", "can never be set", id="bad-limit-from"),
    pytest.param(settings(rate_limits={"rules": [{"limit": "1/second",
                                                  "request": {"method": "P OST"}}]}),
                 "rate_limits.rules[0].request.method", "not an HTTP method",
                 id="rule-bad-method"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "x", "request": {"path": "v2"}}]),
                 "routes[0].request.path", "starting with '/'", id="route-bad-path"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "x", "request": {}}]),
                 "routes[0].request", "needs method or path", id="route-empty-request"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "x",
                                   "request": {"verb": "GET"}}]),
                 "routes[0].request.verb", "unknown key", id="route-request-unknown"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "x", "allow": ["x"]}]),
                 "routes[0].allow", "only with backend_from", id="allow-without-from"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend_from": ""}]),
                 "routes[0].backend_from", "is empty", id="empty-backend-from"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend_from": "backend", "backend": "x"}]),
                 "routes[0]", "exactly one of", id="backend-and-backend-from"),
    pytest.param(settings(backends={"x": {"app": "a:b"}},
                          routes=[{"when": {}, "backend": "stored-one"}]),
                 "routes[0].backend", "reached through backend_from",
                 id="stored-backend-by-name"),
]


@pytest.mark.parametrize(("config", "key", "reason"), BAD_CONFIGS)
def test_bad_config_names_the_key_and_the_reason(config: dict[str, Any], key: str,
                                                 reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, source="envroute.toml")
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"envroute.toml: {key}: ")


def test_defaults_match_the_contract() -> None:
    parsed = parse_settings(settings())
    assert parsed.previous_secrets == ()
    assert {n: e.id_tag for n, e in parsed.environments.items()} == {
        "sandbox": "test", "production": "live"}
    assert (parsed.health.path, parsed.metrics.path, parsed.metrics.token) == ("", "", "")
    assert (parsed.logging.access, parsed.logging.format) == (True, "text")
    assert parsed.events.hooks == ()
    assert parsed.store_url == f"sqlite:///{Path.cwd() / 'envroute.db'}"
    assert parsed.auth.header == "X-API-Key" and parsed.auth.query_param == ""
    assert parsed.auth.cache_ttl == 5.0
    assert {n: (e.prefix, e.restricted_prefix) for n, e in parsed.environments.items()} == {
        "sandbox": ("sk_test_", "rk_test_"), "production": ("sk_live_", "rk_live_")}


def test_every_0_2_key_is_parsed(tmp_path: Path) -> None:
    parsed = parse_settings(settings(
        previous_secrets=["p" * 40], environments={
            "sandbox": {"id_tag": "sbx"}, "production": {},
            "staging": {"prefix": "sk_stg_"}, "EU_Prod.2": {"prefix": "sk_eu_"}},
        health={"path": "/healthz"}, logging={"access": False, "format": "json"},
        events={"hooks": ["myproject.hooks:on_event"]},
        backends={"shared": {"url": "http://127.0.0.1:9/"}},
        routes=[{"when": {"customer_id": ["acme", "globex"]}, "backend_from": "backend",
                 "allow": ["dedicated-*"], "request": {"method": ["get", "POST"],
                                                       "path": "/v2/**"}},
                {"when": {}, "backend": "shared"}],
        rate_limits={"rules": [{"limit": "10/second", "per": "customer_id",
                                "request": {"method": "POST", "path": "/v1/charges"},
                                "limit_from": "rate_limit"}]},
        store={"url": "sqlite:///keys.db"}), base_dir=tmp_path)
    assert parsed.previous_secrets == ("p" * 40,)
    assert {n: e.id_tag for n, e in parsed.environments.items()} == {
        "sandbox": "sbx", "production": "live", "staging": "staging", "EU_Prod.2": "EUProd2"}
    assert parsed.health.path == "/healthz"
    assert (parsed.logging.access, parsed.logging.format) == (False, "json")
    assert parsed.events.hooks == ("myproject.hooks:on_event",)
    route = parsed.routes[0]
    assert (route.backend_from, route.allow) == ("backend", ("dedicated-*",))
    assert route.when == {"customer_id": frozenset({"acme", "globex"})}
    assert route.request == RequestCondition(frozenset({"GET", "POST"}), ("/v2/**",))
    assert parsed.rate_limits is not None
    rule = parsed.rate_limits.rules[0]
    assert (rule.per, rule.limit_from) == ("customer_id", "rate_limit")
    assert rule.request == RequestCondition(frozenset({"POST"}), ("/v1/charges",))
    assert parsed.store_url == f"sqlite:///{tmp_path / 'keys.db'}"


def test_metrics_need_their_extra() -> None:
    config = settings(metrics={"path": "/metrics", "token": "${METRICS_TOKEN:-tok}"})
    if importlib.util.find_spec("prometheus_client") is None:
        with pytest.raises(ConfigError, match=r"metrics.path: metrics need prometheus_client"):
            parse_settings(config)
    else:
        parsed = parse_settings(config)
        assert (parsed.metrics.path, parsed.metrics.token) == ("/metrics", "tok")


def test_a_relative_sqlite_path_is_relative_to_the_toml_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "envroute.toml"
    path.write_text(f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///data/keys.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    assert caught.value.key == "store.url"
    assert f"the directory {tmp_path / 'conf' / 'data'} does not exist" in caught.value.reason
    (tmp_path / "conf" / "data").mkdir()
    assert load_file(path).store_url == f"sqlite:///{tmp_path / 'conf' / 'data' / 'keys.db'}"
    absolute = f"sqlite:///{tmp_path / 'abs.db'}"
    assert parse_settings(settings(store={"url": absolute})).store_url == absolute


def test_a_single_backend_needs_no_routes() -> None:
    parsed = parse_settings(settings(), builtin_backends=["app"])
    assert [(r.when, r.backend) for r in parsed.routes] == [({}, "app")]


def test_a_wrapped_app_cannot_be_shadowed_by_config() -> None:
    with pytest.raises(ConfigError, match=r"backends\.app: 'app' is the application"):
        parse_settings(settings(backends={"app": {"app": "a:b"}}), builtin_backends=["app"])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5), ("10m", 600), ("24h", 86400), ("30d", 2592000), ("7", 7),
     (2.5, 2.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_variables_expand_with_defaults_and_escapes() -> None:
    env = {"HOST": "db.internal"}
    tree = {"a": "${HOST}", "b": ["${PORT:-5432}"], "c": {"d": "$${HOST}"}}
    assert expand_variables(tree, environ=env) == {"a": "db.internal", "b": ["5432"],
                                                   "c": {"d": "${HOST}"}}


def test_unset_variable_without_default_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        expand_variables({"store": {"url": "${NOPE_NOT_SET}"}}, source="gw.toml", environ={})
    assert caught.value.key == "store.url"
    assert "NOPE_NOT_SET is not set" in str(caught.value)


def test_toml_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('secret = "unterminated\n')
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_file(broken)
    with pytest.raises(ConfigError, match=r"missing.toml: file not found"):
        load_file(tmp_path / "missing.toml")


def test_toml_and_dict_are_the_same_schema(tmp_path: Path, store_url: str) -> None:
    path = tmp_path / "envroute.toml"
    path.write_text(f'''
secret = "{SECRET}"
[store]
url = "{store_url}"
[backends.sandbox]
app = "envroute.demo_apps:sandbox_app"
[[routes]]
when = {{environment = ["sandbox"]}}
backend = "sandbox"
[[routes]]
when = {{}}
backend = "app"
''')
    from_file = load_file(path, builtin_backends=["app"])
    from_dict = parse_settings({
        "secret": SECRET, "store": {"url": store_url},
        "backends": {"sandbox": {"app": "envroute.demo_apps:sandbox_app"}},
        "routes": [{"when": {"environment": ["sandbox"]}, "backend": "sandbox"},
                   {"when": {}, "backend": "app"}]}, builtin_backends=["app"])
    assert from_file.routes == from_dict.routes and from_file.backends == from_dict.backends


def test_import_string_is_loaded_at_start_up(store_url: str) -> None:
    config = settings(store={"url": store_url},
                      backends={"x": {"app": "envroute.demo_apps:no_such_app"}})
    with pytest.raises(ConfigError, match=r"backends.x.app: cannot import"):
        EnvRouter(None, config)


def test_the_store_option_is_checked_as_the_config_key_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_url_option("sqlite:///k.db") == f"sqlite:///{tmp_path / 'k.db'}"
    with pytest.raises(ConfigError) as caught:
        store_url_option("sqlite:///gone/k.db")
    assert str(caught.value) == (f"--store: the directory {tmp_path / 'gone'} does not exist "
                                 "(create it, or point the store elsewhere)")
    with pytest.raises(ConfigError, match="unknown store scheme 'mongodb'"):
        store_url_option("mongodb://h/db")
