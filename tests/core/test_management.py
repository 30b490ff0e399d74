"""Customers, keys that change, stored backends and the audit log, through the console
script on every store (SQLite and the real PostgreSQL), as an operator runs them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import SECRET
from tests.support.processes import BIN
from tests.support.services import require_postgres

ENVROUTE = str(BIN / "envroute")

CONFIG = f"""
secret = "{SECRET}"
[store]
url = "sqlite:///keys.db"
[backends.shared]
url = "http://127.0.0.1:9"
[[routes]]
when = {{}}
backend = "shared"
"""


class Cli:
    """``envroute …`` in a project folder, against one store."""

    def __init__(self, cwd: Path, store: str) -> None:
        self.cwd = cwd
        self.store = store

    def __call__(self, *args: str, code: int | None = 0, stdin: str | None = None,
                 actor: str = "tester") -> subprocess.CompletedProcess[str]:
        extra = ["--store", self.store] if args and args[0] != "demo" else []
        if args and args[-1] not in ("--help",) and _changes(args):
            extra += ["--actor", actor]
        result = subprocess.run([ENVROUTE, *args, *extra], cwd=self.cwd, capture_output=True,
                                text=True, input=stdin, env=os.environ.copy(), timeout=60)
        if code is not None:
            assert result.returncode == code, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self(*args, "--json", **kwargs).stdout)


_CHANGING = {("keys", "create"), ("keys", "update"), ("keys", "disable"), ("keys", "enable"),
             ("keys", "revoke"), ("keys", "roll"), ("customers", "create"),
             ("customers", "update"), ("customers", "disable"), ("customers", "enable"),
             ("backends", "add"), ("backends", "update"), ("backends", "remove")}


def _changes(args: tuple[str, ...]) -> bool:
    return tuple(args[:2]) in _CHANGING


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    (tmp_path / "envroute.toml").write_text(CONFIG)
    if request.param == "sqlite":
        yield Cli(tmp_path, f"sqlite:///{tmp_path / 'keys.db'}")
        return
    from tests.policies.conftest import drop_schema, with_schema

    base = require_postgres()
    schema = f"envroute_test_{secrets.token_hex(6)}"
    yield Cli(tmp_path, with_schema(base, schema))
    drop_schema(base, schema)


def test_customers_from_creation_to_disable(cli: Cli) -> None:
    made = cli.json("customers", "create", "acme", "--name", "ACME", "--meta", "tier=gold",
                    "--meta", "backend=shared")
    assert made["id"] == "acme" and made["metadata"] == {"tier": "gold", "backend": "shared"}
    assert "exists" in cli("customers", "create", "acme", code=1).stderr
    key = cli.json("keys", "create", "-e", "sandbox", "--customer", "acme", "--meta",
                   "region=eu")
    assert key["customer_id"] == "acme" and key["metadata"] == {"region": "eu"}
    moved = cli.json("customers", "update", "acme", "--meta", "backend=acme-dedicated",
                     "--unset-meta", "tier")
    assert moved["metadata"] == {"backend": "acme-dedicated"}
    shown = cli.json("customers", "show", "acme")
    assert shown["keys"] == [{"id": key["id"], "environment": "sandbox", "status": "active",
                              "last4": key["key"][-4:], "name": ""}]
    assert cli.json("customers", "disable", "acme")["status"] == "disabled"
    assert cli.json("keys", "show", key["id"])["status"] == "active"  # the key's own status
    assert cli.json("customers", "enable", "acme")["status"] == "active"
    listed = cli.json("customers", "list")
    assert [c["id"] for c in listed] == ["acme"]
    assert "ACME" in cli("customers", "list").stdout
    human = cli("customers", "show", "acme").stdout
    assert key["id"] in human and key["key"] not in human


def test_keys_change_and_are_filtered(cli: Cli) -> None:
    cli("customers", "create", "acme")
    first = cli.json("keys", "create", "-e", "sandbox", "--customer", "acme")
    second = cli.json("keys", "create", "-e", "production", "--meta", "tier=free")
    updated = cli.json("keys", "update", second["id"], "--meta", "region=eu", "--unset-meta",
                       "tier", "--name", "renamed", "--expires-in", "30d")
    assert updated["metadata"] == {"region": "eu"} and updated["name"] == "renamed"
    assert updated["expires_at"] is not None
    assert cli.json("keys", "update", second["id"], "--no-expiry")["expires_at"] is None
    assert cli.json("keys", "disable", second["id"])["status"] == "disabled"

    def ids(*filters: str) -> list[str]:  # same-second keys: order by id
        return sorted(k["id"] for k in cli.json("keys", "list", *filters))

    assert ids() == sorted([first["id"], second["id"]])
    assert ids("--customer", "acme") == [first["id"]]
    assert ids("--environment", "production") == [second["id"]]
    assert ids("--status", "disabled") == [second["id"]]
    assert ids("--status", "active") == [first["id"]]
    assert cli.json("keys", "enable", second["id"])["status"] == "active"
    assert cli.json("keys", "revoke", first["id"])["status"] == "revoked"
    assert ids("--status", "revoked") == [first["id"]]
    record = cli.json("keys", "show", second["id"])
    assert {"id", "environment", "customer_id", "metadata", "name", "scopes", "created_at",
            "expires_at", "revoked_at", "disabled_at", "last_used_at", "last4",
            "status"} <= set(record)


def test_an_unknown_customer_creates_nothing(cli: Cli) -> None:
    result = cli("keys", "create", "-e", "sandbox", "--customer", "nobody", code=1)
    assert result.stderr == "envroute: error: no customer nobody\n"
    assert cli.json("keys", "list") == []


@pytest.mark.parametrize(("args", "code", "message"), [
    pytest.param(["keys", "create", "-e", "sandbox", "--expires-in", "0s"], 2,
                 "not longer than 0s", id="zero-expiry"),
    pytest.param(["keys", "create", "-e", "sandbox", "--meta", "customer_id=x"], 1,
                 "'customer_id' is reserved", id="reserved-key-metadata"),
    pytest.param(["customers", "create", "acme", "--meta", "environment=x"], 1,
                 "'environment' is reserved", id="reserved-customer-metadata"),
    pytest.param(["customers", "create", "a b"], 1, "is not a customer id",
                 id="bad-customer-id"),
    pytest.param(["customers", "create", "x" * 65], 1, "is not a customer id",
                 id="long-customer-id"),
    pytest.param(["customers", "show", "nobody"], 1, "no customer nobody",
                 id="unknown-customer"),
    pytest.param(["keys", "list", "--customer", "nobody"], 1, "no customer nobody",
                 id="list-unknown-customer"),
    pytest.param(["keys", "update", "key_x", "--expires-in", "1d", "--no-expiry"], 2,
                 "not allowed with", id="expiry-both-ways"),
    pytest.param(["keys", "usage", "key_x", "--days", "0"], 2, "days >= 1", id="zero-days"),
    pytest.param(["keys", "revoke"], 2, "one of the arguments ID --secret is required",
                 id="revoke-nothing"),
    pytest.param(["backends", "add", "x"], 2, "--url", id="backend-without-url"),
    pytest.param(["backends", "add", "shared", "--url", "http://h"], 1,
                 "backend 'shared' is defined in the config", id="configured-name"),
    pytest.param(["backends", "add", "app", "--url", "http://h"], 1,
                 "backend 'app' is the name of the app envroute wraps", id="app-name"),
    pytest.param(["backends", "add", "a.b", "--url", "http://h"], 1, "is not a backend name",
                 id="bad-backend-name"),
    pytest.param(["backends", "add", "x", "--url", "ftp://h"], 1,
                 "url: 'ftp://h' is not an http:// or https:// URL", id="bad-url"),
    pytest.param(["backends", "add", "x", "--url", "http://h", "--strip-prefix", "a/"], 1,
                 "strip_prefix", id="bad-strip-prefix"),
    pytest.param(["backends", "show", "nope"], 1, "nope", id="unknown-backend"),
    pytest.param(["audit", "--since", "yesterday"], 2, "neither a duration", id="bad-since"),
])
def test_failures_are_one_line(cli: Cli, args: list[str], code: int, message: str) -> None:
    result = cli(*args, code=code)
    assert message in result.stderr and "Traceback" not in result.stderr
    if code == 1:
        assert result.stderr.count("\n") == 1, result.stderr


def test_a_secret_typed_where_an_id_belongs_is_never_echoed(cli: Cli) -> None:
    key = cli.json("keys", "create", "-e", "production")
    secret = key["key"]
    shown = f"sk_live_…{secret[-4:]}"
    for args in (["keys", "show", secret], ["keys", "revoke", secret],
                 ["keys", "roll", secret], ["keys", "usage", secret],
                 ["customers", "show", secret], ["backends", "show", secret]):
        result = cli(*args, code=1)
        assert secret not in result.stdout + result.stderr, args
        assert shown in result.stderr, (args, result.stderr)
    refused = cli("keys", "revoke", "--secret", secret, code=2)
    assert secret not in refused.stderr and "standard input" in refused.stderr
    assert cli.json("keys", "show", key["id"])["status"] == "active"


def test_revoke_by_a_leaked_secret_read_from_stdin(cli: Cli) -> None:
    key = cli.json("keys", "create", "-e", "sandbox")
    rolled = cli.json("keys", "roll", key["id"], "--expires-in", "1h")
    result = cli("keys", "revoke", "--secret", "-", stdin=key["key"] + "\n")  # the old secret
    assert result.stdout == key["id"] + "\n"
    assert key["key"] not in result.stdout + result.stderr
    assert rolled["key"] not in result.stdout + result.stderr
    assert cli.json("keys", "show", key["id"])["status"] == "revoked"
    unknown = cli("keys", "revoke", "--secret", "-", code=1,
                  stdin=key["key"][:-10] + "0000000000")
    assert key["key"][:-10] not in unknown.stderr


def test_expiring_lists_keys_and_rolled_secrets(cli: Cli) -> None:
    soon = cli.json("keys", "create", "-e", "sandbox", "--expires-in", "3d")
    later = cli.json("keys", "create", "-e", "sandbox", "--expires-in", "30d")
    rolled = cli.json("keys", "create", "-e", "sandbox")
    cli("keys", "roll", rolled["id"], "--expires-in", "2d")
    week = cli.json("keys", "expiring", "--within", "7d")
    assert [(e["id"], e["what"]) for e in week] == [(rolled["id"], "rolled secret"),
                                                    (soon["id"], "key")]
    assert later["id"] not in cli("keys", "expiring", "--within", "7d").stdout
    assert cli.json("keys", "expiring", "--within", "1d") == []


def test_stored_backends(cli: Cli) -> None:
    added = cli.json("backends", "add", "acme-dedicated", "--url", "http://10.0.0.7:8080",
                     "--timeout", "10s", "--strip-prefix", "/acme")
    assert added["url"] == "http://10.0.0.7:8080" and added["timeout"] == 10.0
    assert "exists" in cli("backends", "add", "acme-dedicated", "--url", "http://h",
                           code=1).stderr
    updated = cli.json("backends", "update", "acme-dedicated", "--pool-size", "4")
    assert (updated["pool_size"], updated["timeout"], updated["strip_prefix"]) == (
        4, 10.0, "/acme")  # flags not given keep their values
    assert [b["name"] for b in cli.json("backends", "list")] == ["acme-dedicated"]
    assert cli.json("backends", "show", "acme-dedicated")["pool_size"] == 4
    cli("backends", "remove", "acme-dedicated")
    assert cli.json("backends", "list") == []


def test_the_audit_log(cli: Cli) -> None:
    cli("customers", "create", "acme", "--meta", "tier=gold", actor="alice")
    key = cli.json("keys", "create", "-e", "sandbox", "--customer", "acme", actor="bob")
    other = cli.json("keys", "create", "-e", "sandbox")
    cli("keys", "roll", key["id"])
    cli("keys", "update", other["id"], "--name", "x")
    cli("backends", "add", "edge", "--url", "http://h")
    cli("customers", "update", "acme", "--meta", "backend=edge")
    log = cli.json("audit")
    assert [r["action"] for r in log] == [
        "customer.updated", "backend.added", "key.updated", "key.rolled", "key.created",
        "key.created", "customer.created"]
    assert log[-1]["actor"] == "alice" and log[-3]["actor"] == "tester"
    assert log[-2]["actor"] == "bob" and log[-2]["customer_id"] == "acme"
    assert log[0]["changes"] == {"metadata": {"before": {"tier": "gold"},
                                              "after": {"tier": "gold", "backend": "edge"}}}
    assert {"at", "actor", "action", "target", "changes"} <= set(log[0])
    everything = json.dumps(log) + cli("audit").stdout
    assert key["key"] not in everything and other["key"] not in everything
    assert [r["action"] for r in cli.json("audit", "--key", key["id"])] == [
        "key.rolled", "key.created"]
    assert [r["action"] for r in cli.json("audit", "--customer", "acme")] == [
        "customer.updated", "key.rolled", "key.created", "customer.created"]
    assert [r["action"] for r in cli.json("audit", "--backend", "edge")] == ["backend.added"]
    assert len(cli.json("audit", "--since", "1h")) == 7
    assert cli.json("audit", "--since", "2999-01-01") == []


def test_usage_per_key_and_customer(cli: Cli) -> None:
    from datetime import timedelta

    from envroute.stores import UsageBatch, open_store
    from envroute.stores.base import utcnow

    cli("customers", "create", "acme")
    one = cli.json("keys", "create", "-e", "sandbox", "--customer", "acme")["id"]
    two = cli.json("keys", "create", "-e", "production", "--customer", "acme")["id"]
    today = utcnow().date()
    store = open_store(cli.store)
    try:
        store.write_usage(UsageBatch(counts={
            (one, today): (5, 1), (two, today): (3, 2),
            (one, today - timedelta(days=3)): (7, 0),
            (one, today - timedelta(days=40)): (100, 100)}))
    finally:
        store.close()
    assert cli.json("keys", "usage", one) == [
        {"date": (today - timedelta(days=3)).isoformat(), "requests": 7, "errors": 0},
        {"date": today.isoformat(), "requests": 5, "errors": 1}]
    assert cli.json("keys", "usage", one, "--days", "2") == [
        {"date": today.isoformat(), "requests": 5, "errors": 1}]
    assert cli.json("customers", "usage", "acme", "--days", "1") == [
        {"date": today.isoformat(), "requests": 8, "errors": 3}]
    table = cli("customers", "usage", "acme").stdout
    assert "total" in table and "15" in table


def test_every_argument_has_help() -> None:
    import argparse

    from envroute.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "envroute")
    assert missing == []
