"""§10: ``keys list`` filters combine, and ``--json`` is the complete record (§3) of every
key, exactly what ``keys show --json`` says, for keys of every status, on every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from envroute.stores import open_store
from envroute.stores.base import utcnow

from .test_management import Cli, cli

__all__ = ["cli"]

RECORD = {"id", "environment", "customer_id", "metadata", "name", "scopes", "created_at",
          "expires_at", "revoked_at", "disabled_at", "last_used_at", "last4", "status"}


def made(cli: Cli, *args: str) -> str:
    identifier: str = cli.json("keys", "create", *args)["id"]
    return identifier


def test_keys_list_json_is_complete_and_filters_combine(cli: Cli) -> None:
    cli("customers", "create", "acme")
    keys = {
        "active": made(cli, "-e", "production", "--customer", "acme", "--meta", "tier=gold",
                       "--name", "live"),
        "disabled": made(cli, "-e", "production", "--customer", "acme"),
        "revoked": made(cli, "-e", "sandbox", "--customer", "acme"),
        "expired": made(cli, "-e", "sandbox"),
        "second": made(cli, "-e", "sandbox", "--customer", "acme"),
    }
    cli("keys", "disable", keys["disabled"])
    cli("keys", "revoke", keys["revoked"])
    store = open_store(cli.store)
    try:  # an expiry in the past cannot be typed (--expires-in is a duration from now)
        store.update_key(keys["expired"], {"expires_at": utcnow() - timedelta(minutes=1)})
    finally:
        store.close()

    listed = {k["id"]: k for k in cli.json("keys", "list")}
    assert set(listed) == set(keys.values())
    for record in listed.values():
        assert set(record) >= RECORD, RECORD - set(record)
        assert record == cli.json("keys", "show", record["id"])
        assert "key" not in record and "secret" not in record
    active = listed[keys["active"]]
    assert (active["customer_id"], active["metadata"], active["name"]) == (
        "acme", {"tier": "gold"}, "live")
    assert listed[keys["expired"]]["customer_id"] is None

    def ids(*filters: str) -> set[str]:
        return {k["id"] for k in cli.json("keys", "list", *filters)}

    for status in ("active", "disabled", "revoked", "expired"):
        expected = {keys[status]} | ({keys["second"]} if status == "active" else set())
        assert ids("--status", status) == expected, status
        assert {listed[i]["status"] for i in expected} == {status}
    assert ids("--customer", "acme", "--environment", "sandbox") == {keys["revoked"],
                                                                     keys["second"]}
    assert ids("--customer", "acme", "--environment", "production", "--status",
               "active") == {keys["active"]}
    assert ids("--environment", "sandbox", "--status", "expired") == {keys["expired"]}


@pytest.mark.parametrize("filters, message", [
    pytest.param(["--status", "gone"], "invalid choice", id="unknown-status"),
])
def test_a_bad_filter_is_a_usage_error(cli: Cli, filters: list[str], message: str) -> None:
    assert message in cli("keys", "list", *filters, code=2).stderr
