"""``manage.py envroute_keys``: the CLI's flags and output, against the project's database."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from tests.integrations.conftest import bearer, problem_of

pytestmark = pytest.mark.django_db
#: Until the django:// store's 0.2 models (customers, audit, usage) are installed.
NEEDS_DJANGO_02 = pytest.mark.skipif(
    not hasattr(__import__("django_envroute.models").models, "Customer"),
    reason="the django:// store has no 0.2 models yet")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("envroute_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_json(*args: str) -> Any:
    out, _ = run(*args, "--json")
    return json.loads(out)


def test_create_prints_the_secret_once_and_the_key_works(client: Client) -> None:
    created = run_json("create", "--environment", "production", "--meta", "customer=acme",
                       "--name", "ACME", "--expires-in", "30d")
    assert set(created) >= {"id", "key", "environment", "metadata"}
    assert created["key"].startswith("sk_live_")
    assert created["metadata"] == {"customer": "acme"}
    response = client.get("/v1/charges", headers=bearer(created["key"]))
    assert response.json()["metadata"] == {"customer": "acme"}
    shown, _ = run("show", created["id"])
    listed, _ = run("list")
    for text in (shown, listed, json.dumps(run_json("list"))):
        assert created["key"] not in text
        assert created["key"][-4:] in text  # shown as prefix…last4


def test_human_output_warns_that_the_secret_is_shown_once() -> None:
    out, err = run("create", "--environment", "sandbox")
    assert "sk_test_" in out
    assert "shown only once" in err


def test_revoke_then_the_key_is_refused(client: Client) -> None:
    created = run_json("create", "--environment", "production")
    assert client.get("/v1/charges", headers=bearer(created["key"])).status_code == 200
    revoked = run_json("revoke", created["id"])
    assert revoked["status"] == "revoked"
    response = client.get("/v1/charges", headers=bearer(created["key"]))
    assert problem_of(response.content)["code"] == "revoked_key"


def test_roll_issues_a_new_secret_and_retires_the_old(client: Client) -> None:
    created = run_json("create", "--environment", "production")
    assert client.get("/v1/charges", headers=bearer(created["key"])).status_code == 200
    rolled = run_json("roll", created["id"])
    assert rolled["id"] == created["id"] and rolled["key"] != created["key"]
    assert client.get("/v1/charges", headers=bearer(rolled["key"])).status_code == 200
    assert client.get("/v1/charges", headers=bearer(created["key"])).status_code == 401


def test_roll_with_a_grace_period_keeps_the_old_secret(client: Client) -> None:
    created = run_json("create", "--environment", "production")
    rolled = run_json("roll", created["id"], "--expires-in", "1h")
    for secret in (created["key"], rolled["key"]):
        assert client.get("/v1/charges", headers=bearer(secret)).status_code == 200


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["show", "key_nope"], "no key key_nope", id="unknown-id"),
    pytest.param(["create", "--environment", "moon"], "unknown environment 'moon'",
                 id="unknown-environment"),
    pytest.param(["create", "--environment", "sandbox", "--scope", "x"], "scope 'x'",
                 id="undefined-scope"),
    pytest.param(["create"], "--environment", id="usage-error"),
    pytest.param(["create", "--environment", "sandbox", "--expires-in", "soon"], "soon",
                 id="bad-duration"),
])
def test_errors_are_one_clear_command_error(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_store_flag_overrides_the_store(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    created = run_json("create", "--environment", "sandbox", "--store", url)
    assert [k["id"] for k in run_json("list", "--store", url)] == [created["id"]]
    assert run_json("list") == []


def manage(command: str, *args: str) -> Any:
    out = StringIO()
    call_command(command, *args, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


@NEEDS_DJANGO_02
def test_customers_backends_and_audit_mirror_the_cli(client: Client) -> None:
    manage("envroute_customers", "create", "acme", "--meta", "tier=gold", "--actor", "ops")
    key = manage("envroute_keys", "create", "--environment", "production", "--customer", "acme",
                 "--meta", "region=eu")
    seen = client.get("/v1/charges", headers=bearer(key["key"])).json()
    assert seen["metadata"] == {"tier": "gold", "region": "eu"}
    manage("envroute_customers", "update", "acme", "--meta", "tier=enterprise")
    seen = client.get("/v1/charges", headers=bearer(key["key"])).json()
    assert seen["metadata"]["tier"] == "enterprise"  # honoured at once in this process
    shown = manage("envroute_customers", "show", "acme")
    assert [k["id"] for k in shown["keys"]] == [key["id"]]
    added = manage("envroute_backends", "add", "edge", "--url", "http://127.0.0.1:9")
    assert added["name"] == "edge"
    assert [b["name"] for b in manage("envroute_backends", "list")] == ["edge"]
    manage("envroute_customers", "disable", "acme")
    refused = client.get("/v1/charges", headers=bearer(key["key"]))
    assert problem_of(refused.content)["code"] == "disabled_key"
    log = manage("envroute_audit", "--customer", "acme")
    assert [r["action"] for r in log] == ["customer.disabled", "customer.updated",
                                          "key.created", "customer.created"]
    assert log[-1]["actor"] == "ops"
    assert key["key"] not in json.dumps(manage("envroute_audit"))


def test_revoke_by_a_leaked_secret(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    key = run_json("create", "--environment", "production")
    monkeypatch.setattr("sys.stdin", StringIO(key["key"] + "\n"))
    out, _ = run("revoke", "--secret", "-")
    assert out == key["id"] + "\n"
    assert client.get("/v1/charges", headers=bearer(key["key"])).status_code == 401


@NEEDS_DJANGO_02
@pytest.mark.parametrize(("command", "args", "message"), [
    pytest.param("envroute_customers", ["show", "nobody"], "no customer nobody",
                 id="unknown-customer"),
    pytest.param("envroute_backends", ["add", "x", "--url", "ftp://h"], "http:// or https://",
                 id="bad-url"),
    pytest.param("envroute_keys", ["create", "-e", "sandbox", "--customer", "nobody"],
                 "no customer nobody", id="unknown-customer-key"),
])
def test_new_commands_fail_with_one_command_error(command: str, args: list[str],
                                                  message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(command, *args, stdout=StringIO(), stderr=StringIO())
