"""§3, §10, §12, §13 and §16 through the console script: names, flags, ``--json`` fields,
exit statuses (0 done, 1 operational, 2 usage) and no secret in any output."""

from __future__ import annotations

import pytest

from .conftest import Cli

#: §10: the fields of ``keys create --json``.
CREATED = {"id", "key", "environment", "customer_id", "metadata", "scopes", "created_at",
           "expires_at"}
#: §3: every record field, which ``show``/``list --json`` hold (never the secret).
RECORD = {"id", "environment", "customer_id", "metadata", "name", "scopes", "created_at",
          "expires_at", "revoked_at", "disabled_at", "last_used_at", "last4", "status"}
#: §12: a customer record.
CUSTOMER = {"id", "name", "metadata", "created_at", "disabled_at", "status"}
#: §16: an audit record.
AUDIT = {"at", "actor", "action", "target", "changes"}


def test_keys_create_json_has_the_contracts_fields(cli: Cli) -> None:
    cli.run("customers", "create", "acme", "--name", "Acme", "--meta", "tier=pro")
    created = cli.json("keys", "create", "--environment", "sandbox", "--customer", "acme",
                       "--meta", "region=eu", "--scope", "charges:read", "--name", "ci",
                       "--expires-in", "30d")
    assert set(created) >= CREATED
    assert created["id"].startswith("key_")
    assert created["key"].startswith("rk_test_")
    assert created["customer_id"] == "acme"
    assert created["metadata"] == {"region": "eu"}  # the key's own; the customer's apart
    assert created["scopes"] == ["charges:read"]
    assert created["expires_at"] is not None
    for shown in (cli.json("keys", "show", created["id"]), *cli.json("keys", "list")):
        assert set(shown) >= RECORD
        assert created["key"] not in str(shown)
        assert shown["last4"] == created["key"][-4:]
        assert shown["status"] == "active"


@pytest.mark.parametrize(("action", "status"), [
    pytest.param("disable", "disabled", id="disable"),
    pytest.param("revoke", "revoked", id="revoke"),
])
def test_status_is_one_of_the_four(cli: Cli, action: str, status: str) -> None:
    key_id = cli.json("keys", "create", "--environment", "sandbox")["id"]
    cli.run("keys", action, key_id)
    assert cli.json("keys", "show", key_id)["status"] == status
    assert [k["id"] for k in cli.json("keys", "list", "--status", status)] == [key_id]


def test_customers_json_fields_and_keys_of_a_customer(cli: Cli) -> None:
    created = cli.json("customers", "create", "acme", "--name", "Acme", "--meta", "tier=pro")
    assert set(created) >= CUSTOMER and created["status"] == "active"
    key = cli.json("keys", "create", "--environment", "sandbox", "--customer", "acme")
    shown = cli.json("customers", "show", "acme")
    assert set(shown) >= CUSTOMER
    assert [{k: v for k, v in entry.items() if k in {"id", "environment", "status", "last4"}}
            for entry in shown["keys"]] == [
        {"id": key["id"], "environment": "sandbox", "status": "active",
         "last4": key["key"][-4:]}]
    updated = cli.json("customers", "update", "acme", "--name", "A", "--meta", "x=1",
                       "--unset-meta", "tier")
    assert (updated["name"], updated["metadata"]) == ("A", {"x": "1"})
    cli.run("customers", "disable", "acme")
    assert cli.json("customers", "show", "acme")["status"] == "disabled"
    cli.run("customers", "enable", "acme")
    assert [c["id"] for c in cli.json("customers", "list")] == ["acme"]
    assert cli.json("customers", "usage", "acme", "--days", "30") == []


def test_backends_flags_and_json(cli: Cli) -> None:
    cli.run("backends", "add", "dedicated-1", "--url", "http://127.0.0.1:9", "--timeout",
            "5s", "--connect-timeout", "2s", "--strip-prefix", "/v1", "--pool-size", "4")
    shown = cli.json("backends", "show", "dedicated-1")
    assert shown["name"] == "dedicated-1" and shown["url"] == "http://127.0.0.1:9"
    cli.run("backends", "update", "dedicated-1", "--timeout", "9s")
    after = cli.json("backends", "show", "dedicated-1")
    assert after["url"] == shown["url"]  # flags not given keep their values
    assert [b["name"] for b in cli.json("backends", "list")] == ["dedicated-1"]
    cli.run("backends", "remove", "dedicated-1")
    assert cli.json("backends", "list") == []


def test_audit_records_every_action_newest_first(cli: Cli) -> None:
    key_id = cli.json("keys", "create", "--environment", "sandbox", "--actor", "ci")["id"]
    for args in (["keys", "update", key_id, "--name", "n"], ["keys", "disable", key_id],
                 ["keys", "enable", key_id], ["keys", "roll", key_id],
                 ["keys", "revoke", key_id], ["customers", "create", "acme"],
                 ["customers", "update", "acme", "--meta", "a=b"],
                 ["customers", "disable", "acme"], ["customers", "enable", "acme"],
                 ["backends", "add", "b1", "--url", "http://127.0.0.1:9"],
                 ["backends", "update", "b1", "--timeout", "3s"],
                 ["backends", "remove", "b1"]):
        cli.run(*args, "--actor", "ci")
    records = cli.json("audit")
    assert all(set(r) >= AUDIT and r["actor"] == "ci" for r in records)
    assert [r["action"] for r in records] == [
        "backend.removed", "backend.updated", "backend.added", "customer.enabled",
        "customer.disabled", "customer.updated", "customer.created", "key.revoked",
        "key.rolled", "key.enabled", "key.disabled", "key.updated", "key.created"]
    assert {r["action"] for r in cli.json("audit", "--key", key_id)} >= {"key.created"}
    assert [r["target"] for r in cli.json("audit", "--backend", "b1")] == ["b1"] * 3
    assert len(cli.json("audit", "--customer", "acme", "--since", "1d")) == 4


@pytest.mark.parametrize(("args", "status"), [
    pytest.param(["keys", "show", "key_nope"], 1, id="unknown-key"),
    pytest.param(["keys", "create", "--environment", "moon"], 1, id="unknown-environment"),
    pytest.param(["keys", "list", "--environment", "moon"], 1, id="list-unknown-environment"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--customer", "nope"], 1,
                 id="unknown-customer"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--scope", "nope"], 1,
                 id="undefined-scope"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--meta", "environment=x"],
                 1, id="reserved-metadata"),
    pytest.param(["customers", "create", "bad id!"], 1, id="bad-customer-id"),
    pytest.param(["customers", "show", "nope"], 1, id="unknown-customer-show"),
    pytest.param(["backends", "add", "sandbox", "--url", "http://127.0.0.1:9"], 1,
                 id="configured-backend-name"),
    pytest.param(["backends", "add", "b", "--url", "ftp://x"], 1, id="bad-backend-url"),
    pytest.param(["backends", "add", "bad name", "--url", "http://x"], 1,
                 id="bad-backend-name"),
    pytest.param(["backends", "remove", "nope"], 1, id="unknown-backend"),
    pytest.param(["backends", "add", "b", "--url", "http://x", "--timeout", "0s"], 1,
                 id="zero-backend-timeout"),
    pytest.param(["--store", "postgresql://u:hunter2@127.0.0.1:1/x", "keys", "list"], 1,
                 id="store-down"),
    pytest.param(["serve", "--store", "postgresql://u:hunter2@127.0.0.1:1/x"], 1,
                 id="serve-store-down"),
    pytest.param(["--config", "missing.toml", "keys", "list"], 1, id="missing-config"),
    pytest.param(["keys", "create"], 2, id="missing-flag"),
    pytest.param(["keys", "frobnicate"], 2, id="unknown-action"),
    pytest.param(["keys", "list", "--status", "gone"], 2, id="bad-status"),
    pytest.param(["keys", "update", "key_x", "--expires-in", "1d", "--no-expiry"], 2,
                 id="exclusive-flags"),
    pytest.param(["audit", "--since", "whenever"], 2, id="bad-since"),
    pytest.param(["nonsense"], 2, id="unknown-command"),
    pytest.param([], 2, id="no-command"),
    pytest.param(["serve", "--port", "70000"], 2, id="serve-port-out-of-range"),
    pytest.param(["demo", "--port", "70000"], 2, id="demo-port-out-of-range"),
    pytest.param(["keys", "revoke"], 2, id="revoke-neither-id-nor-secret"),
    pytest.param(["keys", "revoke", "key_x", "--secret", "-"], 2, id="revoke-both"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--expires-in", "soon"], 2,
                 id="bad-duration"),
    pytest.param(["keys", "usage", "key_x", "--days", "0"], 2, id="zero-days"),
    pytest.param(["explain", "sk_test_x", "GE T", "/v1"], 2, id="explain-bad-method"),
    pytest.param(["explain", "sk_test_x", "GET", "v1"], 2, id="explain-bad-path"),
])
def test_exit_status_and_one_line(cli: Cli, args: list[str], status: int) -> None:
    result = cli.run(*args, status=status)
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("envroute"), result.stderr


#: A well-formed secret with its last character changed: a typo the checksum catches.
TYPO = "sk_test_CCQeQzD66t0IG329U0pRFifCedrQFXjw2Yb3PX"


@pytest.mark.parametrize(("args", "stdin"), [
    pytest.param(["keys", "show", TYPO], "", id="show"),
    pytest.param(["keys", "update", TYPO, "--name", "x"], "", id="update"),
    pytest.param(["keys", "disable", TYPO], "", id="disable"),
    pytest.param(["keys", "enable", TYPO], "", id="enable"),
    pytest.param(["keys", "revoke", TYPO], "", id="revoke"),
    pytest.param(["keys", "roll", TYPO], "", id="roll"),
    pytest.param(["keys", "usage", TYPO], "", id="usage"),
    pytest.param(["keys", "revoke", "--secret", "-"], TYPO, id="revoke-secret-typo"),
    pytest.param(["keys", "revoke", "--secret", "-"], "not_a_key_but_secret_text",
                 id="revoke-secret-text"),
    pytest.param(["keys", "list", "--customer", TYPO], "", id="list-customer"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--customer", TYPO], "",
                 id="create-customer"),
    pytest.param(["customers", "create", TYPO], "", id="customers-create"),
    pytest.param(["customers", "show", TYPO], "", id="customers-show"),
    pytest.param(["explain", TYPO, "GET", "/v1/charges"], "", id="explain"),
    pytest.param(["keys", "create", "--environment", TYPO], "", id="environment"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--scope", TYPO], "",
                 id="scope"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--meta", TYPO], "",
                 id="meta"),
    pytest.param(["backends", "add", TYPO, "--url", "http://127.0.0.1:9"], "",
                 id="backends-add"),
    pytest.param(["backends", "show", TYPO], "", id="backends-show"),
    pytest.param([TYPO], "", id="as-command"),
    pytest.param(["keys", TYPO], "", id="as-action"),
    pytest.param(["keys", "list", "--status", TYPO], "", id="as-status"),
    pytest.param(["explain", "GET", "/v1/charges", TYPO], "", id="explain-order"),
    pytest.param(["backends", "add", "b1", "--url", TYPO], "", id="backends-url"),
    pytest.param(["check", "--app", TYPO], "", id="check-app"),
    pytest.param(["serve", "--app", TYPO], "", id="serve-app"),
    pytest.param(["--config", TYPO, "keys", "list"], "", id="config"),
    pytest.param(["customers", "create", "acme", "--actor", TYPO], "", id="actor"),
])
def test_a_secret_typed_anywhere_is_never_shown(cli: Cli, args: list[str],
                                                stdin: str) -> None:
    result = cli.run(*args, stdin=stdin, status=None)
    output = result.stdout + result.stderr
    secret = stdin or TYPO
    assert secret not in output
    assert secret[8:-4] not in output
    assert cli.json("customers", "list") == []  # nothing stored under a secret's name
    assert cli.json("backends", "list") == []


def test_revoke_by_secret_prints_the_key_id(cli: Cli) -> None:
    created = cli.json("keys", "create", "--environment", "sandbox")
    result = cli.run("keys", "revoke", "--secret", "-", stdin=created["key"] + "\n")
    assert created["id"] in result.stdout
    assert created["key"] not in result.stdout + result.stderr
    assert cli.json("keys", "show", created["id"])["status"] == "revoked"


def test_update_and_usage_and_expiring(cli: Cli) -> None:
    key_id = cli.json("keys", "create", "--environment", "sandbox")["id"]
    updated = cli.json("keys", "update", key_id, "--meta", "a=b", "--name", "n",
                       "--expires-in", "3d")
    assert (updated["metadata"], updated["name"]) == ({"a": "b"}, "n")
    assert updated["expires_at"] is not None
    assert [k["id"] for k in cli.json("keys", "expiring", "--within", "7d")] == [key_id]
    cleared = cli.json("keys", "update", key_id, "--unset-meta", "a", "--no-expiry")
    assert (cleared["metadata"], cleared["expires_at"]) == ({}, None)
    assert cli.json("keys", "expiring", "--within", "7d") == []
    assert cli.json("keys", "usage", key_id, "--days", "30") == []


def test_usage_days_have_date_requests_errors(cli: Cli) -> None:
    from werkzeug.test import Client

    from envroute import EnvRouter

    cli.run("customers", "create", "acme")
    created = cli.json("keys", "create", "--environment", "sandbox", "--customer", "acme")
    gateway = EnvRouter(None, str(cli.cwd / "envroute.toml"))
    try:
        client = Client(gateway)
        auth = {"Authorization": f"Bearer {created['key']}"}
        assert client.get("/v1/charges", headers=auth).status_code == 200
        assert client.get("/nowhere", headers=auth).status_code == 404
    finally:
        gateway.close()  # flushes the usage batch
    for args in (["keys", "usage", created["id"]], ["customers", "usage", "acme"]):
        days = cli.json(*args, "--days", "30")
        assert [set(day) for day in days] == [{"date", "requests", "errors"}]
        assert (days[0]["requests"], days[0]["errors"]) == (2, 1)


@pytest.mark.parametrize("action", ["enable", "disable", "roll"])
def test_revocation_stays_permanent(cli: Cli, action: str) -> None:
    key_id = cli.json("keys", "create", "--environment", "sandbox")["id"]
    cli.run("keys", "revoke", key_id)
    result = cli.run("keys", action, key_id, status=1)
    assert len(result.stderr.strip().splitlines()) == 1 and "revoked" in result.stderr
    shown = cli.json("keys", "show", key_id)
    assert (shown["status"], shown["disabled_at"]) == ("revoked", None)
    assert [r["action"] for r in cli.json("audit", "--key", key_id)] == [
        "key.revoked", "key.created"]


@pytest.mark.parametrize("args", [
    pytest.param(["keys", "update", "{key}"], id="key-no-flags"),
    pytest.param(["keys", "update", "{key}", "--unset-meta", "absent"], id="key-unset-absent"),
    pytest.param(["keys", "update", "{key}", "--name", "ci", "--meta", "a=b"],
                 id="key-same-values"),
    pytest.param(["customers", "update", "acme", "--name", "Acme"], id="customer-same-name"),
    pytest.param(["customers", "update", "acme", "--unset-meta", "absent"],
                 id="customer-unset-absent"),
])
def test_an_update_that_changes_nothing_records_nothing(cli: Cli, args: list[str]) -> None:
    cli.run("customers", "create", "acme", "--name", "Acme")
    key_id = cli.json("keys", "create", "--environment", "sandbox", "--name", "ci",
                      "--meta", "a=b")["id"]
    before = cli.json("audit")
    cli.run(*[a.format(key=key_id) for a in args])
    assert cli.json("audit") == before


def test_within_zero_is_a_usage_error_about_within(cli: Cli) -> None:
    result = cli.run("keys", "expiring", "--within", "0s", status=2)
    assert "--within" in result.stderr and "expiry" not in result.stderr


def test_rolling_again_leaves_an_earlier_old_secrets_expiry(cli: Cli) -> None:
    """§3: only the secret being replaced takes the new roll's expiry."""
    from werkzeug.test import Client

    from envroute import EnvRouter

    created = cli.json("keys", "create", "--environment", "sandbox")
    first = cli.json("keys", "roll", created["id"], "--expires-in", "24h")
    second = cli.json("keys", "roll", created["id"])  # the first roll's secret: at once
    expiring = cli.json("keys", "expiring", "--within", "2d")
    assert [k["id"] for k in expiring] == [created["id"]]  # the original, still retiring
    gateway = EnvRouter(None, str(cli.cwd / "envroute.toml"))
    try:
        client = Client(gateway)
        answers = [client.get("/v1/charges", headers={"Authorization": f"Bearer {s}"})
                   for s in (created["key"], first["key"], second["key"])]
        assert [a.status_code for a in answers] == [200, 401, 200]
        assert answers[1].json is not None and answers[1].json["code"] == "expired_key"
    finally:
        gateway.close()


@pytest.mark.parametrize("args", [
    pytest.param(["keys", "create", "--environment", "sandbox", "--meta", "note={s}"],
                 id="key-metadata-value"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--meta", "{s}=1"],
                 id="key-metadata-name"),
    pytest.param(["keys", "create", "--environment", "sandbox", "--name", "{s}"],
                 id="key-name"),
    pytest.param(["customers", "create", "acme", "--meta", "k={s}"], id="customer-metadata"),
    pytest.param(["customers", "create", "acme", "--name", "{s}"], id="customer-name"),
])
def test_a_secret_pasted_as_a_name_or_metadata_is_never_stored(cli: Cli, args: list[str]
                                                               ) -> None:
    """§3: stored, it would be shown by every command, logged in the audit and sent to every
    backend in Envroute-Metadata."""
    secret = cli.json("keys", "create", "--environment", "sandbox")["key"]
    result = cli.run(*[a.format(s=secret) for a in args], status=1)
    assert secret not in result.stdout + result.stderr
    assert secret not in cli.run("keys", "list", "--json").stdout
    assert secret not in cli.run("audit", "--json").stdout
    assert cli.json("customers", "list") == []
