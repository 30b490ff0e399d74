"""The ``envroute`` console script, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import SECRET
from tests.support.processes import BIN

ENVROUTE = str(BIN / "envroute")

CONFIG = f"""
secret = "${{TEST_SECRET:-{SECRET}}}"
[store]
url = "sqlite:///keys.db"
[backends.sandbox]
app = "envroute.demo_apps:sandbox_app"
[[routes]]
when = {{environment = "sandbox"}}
backend = "sandbox"
[[routes]]
when = {{environment = "production", tier = ["enterprise"]}}
backend = "app"
[scopes]
"charges:read" = ["GET /v1/charges", "GET /v1/charges/*"]
"""


def run(cwd: Path, *args: str, env: dict[str, str] | None = None,
        check: int | None = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([ENVROUTE, *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=60)
    if check is not None:
        assert result.returncode == check, (result.stdout, result.stderr)
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "envroute.toml").write_text(CONFIG)
    return tmp_path


def create(project: Path, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run(project, "keys", "create", *args, "--json").stdout)
    return data


def test_create_prints_the_secret_once_as_json(project: Path) -> None:
    data = create(project, "--environment", "sandbox", "--meta", "customer=acme",
                  "--meta", "tier=free", "--name", "acme test")
    assert {"id", "key", "environment", "metadata"} <= set(data)
    assert data["key"].startswith("sk_test_") and data["id"].startswith("key_")
    assert data["metadata"] == {"customer": "acme", "tier": "free"}
    listing = run(project, "keys", "list").stdout + run(project, "keys", "list", "--json").stdout
    shown = run(project, "keys", "show", data["id"]).stdout
    assert data["key"] not in listing + shown
    assert f"sk_test_…{data['key'][-4:]}" in listing and "acme test" in shown


def test_restricted_key_gets_the_restricted_prefix_and_its_scopes(project: Path) -> None:
    data = create(project, "-e", "production", "--scope", "charges:read")
    assert data["key"].startswith("rk_live_") and data["scopes"] == ["charges:read"]
    shown = json.loads(run(project, "keys", "show", data["id"], "--json").stdout)
    assert shown["scopes"] == ["charges:read"]
    undefined = run(project, "keys", "create", "-e", "sandbox", "--scope", "refunds:write",
                    check=1)
    assert "scope 'refunds:write' is not defined" in undefined.stderr


def test_revoke_and_roll(project: Path) -> None:
    data = create(project, "-e", "sandbox")
    rolled = json.loads(run(project, "keys", "roll", data["id"], "--expires-in", "24h",
                            "--json").stdout)
    assert rolled["id"] == data["id"] and rolled["key"] != data["key"]
    revoked = json.loads(run(project, "keys", "revoke", data["id"], "--json").stdout)
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    listed = json.loads(run(project, "keys", "list", "--json").stdout)
    assert [k["status"] for k in listed] == ["revoked"]


def test_explain_names_route_and_backend_and_sends_nothing(project: Path) -> None:
    test_key = create(project, "-e", "sandbox")["key"]
    live_key = create(project, "-e", "production", "--meta", "tier=free")["key"]
    sandbox = run(project, "explain", test_key, "GET", "/v1/charges").stdout
    assert "routes[0]" in sandbox and "sandbox (in-process app)" in sandbox
    refused = run(project, "explain", live_key, "GET", "/v1/charges", check=1)
    assert "403 no_route" in refused.stdout
    assert refused.stderr == "envroute: error: the request would be refused: 403 no_route\n"
    bad = run(project, "explain", "sk_test_nope", "GET", "/", "--json", check=1)
    assert json.loads(bad.stdout)["code"] == "invalid_key"
    assert bad.stderr == "envroute: error: the request would be refused: 401 invalid_key\n"


def test_check_reports_the_store_and_each_backend(project: Path) -> None:
    result = run(project, "check")
    assert "ok    store" in result.stdout and "backend sandbox" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["keys", "create"], 2, "--environment", id="missing-flag"),
        pytest.param(["keys", "create", "-e", "sandbox", "--meta", "novalue"], 2,
                     "expected KEY=VALUE", id="bad-meta"),
        pytest.param(["keys", "roll", "key_x", "--expires-in", "soon"], 2, "not a duration",
                     id="bad-duration"),
        pytest.param(["frobnicate"], 2, "invalid choice", id="unknown-command"),
        pytest.param(["keys", "show", "key_missing"], 1, "envroute: error: no key key_missing",
                     id="unknown-key"),
        pytest.param(["keys", "create", "-e", "staging"], 1, "unknown environment 'staging'",
                     id="unknown-environment"),
        pytest.param(["keys", "list", "--config", "missing.toml"], 1,
                     "missing.toml: file not found", id="missing-config"),
        pytest.param(["keys", "list", "--store", "mysql://x"], 1, "unknown store scheme",
                     id="unknown-store"),
    ],
)
def test_failures_exit_with_one_clear_line(project: Path, args: list[str], code: int,
                                           message: str) -> None:
    result = run(project, *args, check=code)
    assert message in result.stderr and "Traceback" not in result.stderr
    if code == 1:
        assert result.stderr.count("\n") == 1


def test_broken_config_names_file_and_key(project: Path) -> None:
    (project / "envroute.toml").write_text(CONFIG.replace('backend = "sandbox"',
                                                          'backend = "sandbx"'))
    result = run(project, "keys", "list", check=1)
    assert result.stderr.startswith("envroute: error: envroute.toml: routes[0].backend: "
                                    "backend 'sandbx' is not defined")


def test_config_from_environment_variable_and_store_override(project: Path,
                                                              tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"ENVROUTE_CONFIG": str(project / "envroute.toml")}
    other_store = f"sqlite:///{tmp_path / 'other.db'}"
    run(elsewhere, "keys", "create", "-e", "sandbox", "--store", other_store, env=env)
    assert json.loads(run(elsewhere, "keys", "list", "--json", env=env).stdout) == []
    assert len(json.loads(run(elsewhere, "keys", "list", "--json", "--store", other_store,
                              env=env).stdout)) == 1


def test_unset_variable_stops_with_its_name(project: Path) -> None:
    (project / "envroute.toml").write_text(CONFIG.replace(f":-{SECRET}", ""))
    result = run(project, "keys", "list", check=1)
    assert "secret: environment variable TEST_SECRET is not set" in result.stderr


@pytest.mark.slow
def test_serve_runs_the_gateway(project: Path) -> None:
    import requests

    from tests.support.processes import free_port, running

    key = create(project, "-e", "sandbox")["key"]
    port = free_port()
    with running([ENVROUTE, "serve", "--port", str(port), "--app",
                  "envroute.demo_apps:production_app"], port=port, cwd=project):
        url = f"http://127.0.0.1:{port}/v1/charges"
        ok = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        refused = requests.get(url, timeout=10)
    assert ok.status_code == 200 and ok.json()["livemode"] is False  # the sandbox backend
    assert refused.status_code == 401 and refused.json()["code"] == "missing_credentials"


def test_serve_asks_for_the_app_a_config_routes_to(project: Path) -> None:
    result = run(project, "serve", "--port", "1", check=1)
    assert "pass --app" in result.stderr


def test_check_prints_the_store_url_without_its_password(project: Path) -> None:
    import getpass
    import secrets as random

    from tests.policies.conftest import drop_schema
    from tests.support.services import require_postgres

    base = require_postgres()
    schema = f"envroute_test_{random.token_hex(6)}"
    url = base.replace("postgresql://", f"postgresql://{getpass.getuser()}:hunter2@")
    try:
        result = run(project, "check", "--store",
                     f"{url}?schema={schema}&password=hunter3")  # libpq reads both
    finally:
        drop_schema(base, schema)
    assert "ok    store: postgresql://" in result.stdout and ":***@" in result.stdout
    assert "&password=***" in result.stdout
    assert "hunter" not in result.stdout + result.stderr


def test_a_store_that_is_down_is_one_line(project: Path) -> None:
    result = run(project, "keys", "list", "--store",
                 "postgresql://u:hunter2@127.0.0.1:1/test?connect_timeout=1", check=1)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("envroute: error: ")
    assert "hunter2" not in result.stderr


def test_check_reaches_stored_backends_and_lints(project: Path) -> None:
    from tests.support.processes import free_port

    linted = run(project, "check")  # no key has 'tier' yet: a warning, exit 0
    assert "warn  " in linted.stdout and "'tier'" in linted.stdout
    assert "--strict" in run(project, "check", "--strict", check=1).stderr
    create(project, "-e", "production", "--meta", "tier=enterprise")
    assert "warn" not in run(project, "check", "--strict").stdout
    run(project, "backends", "add", "gone", "--url", f"http://127.0.0.1:{free_port()}")
    result = run(project, "check", check=1)
    assert "FAIL  backend gone (stored)" in result.stdout


def test_a_changed_secret_is_one_clear_line_and_previous_secrets_are_counted(
        project: Path) -> None:
    create(project, "-e", "sandbox")
    other = "x" * 40
    changed = run(project, "keys", "list", env={"TEST_SECRET": other}, check=1)
    assert changed.stderr.count("\n") == 1 and "previous_secrets" in changed.stderr
    (project / "envroute.toml").write_text(CONFIG.replace(
        "[store]", f'previous_secrets = ["{SECRET}"]\n[store]'))
    rotated = run(project, "check", env={"TEST_SECRET": other})
    assert "1 key secret still under a previous secret" in rotated.stdout


def test_explain_says_where_each_metadata_value_came_from(project: Path) -> None:
    run(project, "customers", "create", "acme", "--meta", "tier=enterprise",
        "--meta", "region=us")
    key = create(project, "-e", "production", "--customer", "acme", "--meta", "region=eu")
    shown = run(project, "explain", key["key"], "GET", "/v1/charges").stdout
    assert 'region = "eu"  from the key' in shown
    assert 'tier = "enterprise"  from the customer' in shown
    assert "customer acme" in shown
    data = json.loads(run(project, "explain", key["key"], "GET", "/v1/charges",
                          "--json").stdout)
    assert data["metadata_sources"] == {"region": "key", "tier": "customer"}
    assert data["identity"]["metadata"] == {"region": "eu", "tier": "enterprise"}
