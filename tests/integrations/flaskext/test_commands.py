"""``flask envroute keys …``: the same flags and output as ``envroute keys``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.integrations.conftest import bearer, problem_of


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["envroute", "keys", *args])


def run_json(app: Flask, *args: str) -> Any:
    result = invoke(app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_list_show_revoke_roll(flask_app: Flask) -> None:
    client = flask_app.test_client()
    created = run_json(flask_app, "create", "--environment", "production", "--meta",
                       "customer=acme", "--name", "ACME")
    assert created["key"].startswith("sk_live_")
    assert client.get("/v1/charges", headers=bearer(created["key"])).json["metadata"] == {
        "customer": "acme"}
    listed = run_json(flask_app, "list")
    assert [k["id"] for k in listed] == [created["id"]]
    shown = invoke(flask_app, "show", created["id"])
    assert created["key"] not in shown.stdout and created["key"][-4:] in shown.stdout
    rolled = run_json(flask_app, "roll", created["id"])
    assert client.get("/v1/charges", headers=bearer(rolled["key"])).status_code == 200
    assert client.get("/v1/charges", headers=bearer(created["key"])).status_code == 401
    assert run_json(flask_app, "revoke", created["id"])["status"] == "revoked"
    refused = client.get("/v1/charges", headers=bearer(rolled["key"]))
    assert problem_of(refused.data)["code"] == "revoked_key"


def test_human_create_warns_the_secret_is_shown_once(flask_app: Flask) -> None:
    result = invoke(flask_app, "create", "--environment", "sandbox")
    assert result.exit_code == 0
    assert "sk_test_" in result.stdout
    assert "shown only once" in result.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    pytest.param(["show", "key_nope"], 1, "no key key_nope", id="unknown-id"),
    pytest.param(["create", "--environment", "moon"], 1, "unknown environment",
                 id="unknown-environment"),
    pytest.param(["create"], 2, "--environment", id="usage-error"),
    pytest.param(["frobnicate"], 2, "invalid choice", id="unknown-action"),
])
def test_errors_exit_with_the_clis_status(flask_app: Flask, args: list[str], code: int,
                                          message: str) -> None:
    result = invoke(flask_app, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_store_flag(flask_app: Flask, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    created = run_json(flask_app, "create", "--environment", "sandbox", "--store", url)
    assert [k["id"] for k in run_json(flask_app, "list", "--store", url)] == [created["id"]]
    assert run_json(flask_app, "list") == []


def test_help_lists_the_actions(flask_app: Flask) -> None:
    result = invoke(flask_app, "--help")
    assert result.exit_code == 0
    for action in ("create", "list", "show", "revoke", "roll"):
        assert action in result.stdout


def group(app: Flask, *args: str, code: int = 0, stdin: str | None = None) -> Any:
    result = app.test_cli_runner().invoke(args=["envroute", *args], input=stdin)
    assert result.exit_code == code, result.output
    return result


def test_customers_backends_and_audit_mirror_the_cli(flask_app: Flask) -> None:
    client = flask_app.test_client()
    group(flask_app, "customers", "create", "acme", "--meta", "tier=gold", "--actor", "ops")
    key = json.loads(group(flask_app, "keys", "create", "--environment", "production",
                           "--customer", "acme", "--json").stdout)
    assert client.get("/v1/charges", headers=bearer(key["key"])).json["metadata"] == {
        "tier": "gold"}
    group(flask_app, "customers", "update", "acme", "--meta", "tier=enterprise")
    assert client.get("/v1/charges", headers=bearer(key["key"])).json["metadata"] == {
        "tier": "enterprise"}  # honoured at once in this process
    group(flask_app, "backends", "add", "edge", "--url", "http://127.0.0.1:9")
    assert "edge" in group(flask_app, "backends", "list").stdout
    revoked = group(flask_app, "keys", "revoke", "--secret", "-", stdin=key["key"] + "\n")
    assert revoked.stdout == key["id"] + "\n" and key["key"] not in revoked.output
    log = json.loads(group(flask_app, "audit", "--json").stdout)
    assert [r["action"] for r in log] == ["key.revoked", "backend.added", "customer.updated",
                                          "key.created", "customer.created"]
    assert log[-1]["actor"] == "ops"
    failed = group(flask_app, "customers", "show", key["key"], code=1)
    assert key["key"] not in failed.output and "no customer sk_live_…" in failed.output
    usage = group(flask_app, "backends", "add", "x", code=2).output
    assert usage.strip().splitlines() == [
        "flask envroute backends add: error: the following arguments are required: --url "
        "(see flask envroute backends add --help)"]
