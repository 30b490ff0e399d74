"""Config validation: every mistake stops start-up with the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envroute import ConfigError, EnvRouter
from envroute.config import expand_variables, load_file, parse_duration, parse_settings
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
                 "routes[0]", "exactly one of backend, split or failover", id="two-targets"),
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
    pytest.param(settings(rate_limits={"rules": [{"limit": "lots"}]}),
                 "rate_limits.rules[0].limit", "not a limit", id="bad-limit"),
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
    assert parsed.store_url == "sqlite:///envroute.db"
    assert parsed.auth.header == "X-API-Key" and parsed.auth.query_param == ""
    assert parsed.auth.cache_ttl == 5.0
    assert {n: (e.prefix, e.restricted_prefix) for n, e in parsed.environments.items()} == {
        "sandbox": ("sk_test_", "rk_test_"), "production": ("sk_live_", "rk_live_")}


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
