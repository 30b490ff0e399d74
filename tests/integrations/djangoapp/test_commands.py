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
