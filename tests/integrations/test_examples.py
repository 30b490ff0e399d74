"""The two examples, end to end, with the commands their READMEs tell a new user to paste.

Flask: keys made by the real ``flask --app example_flask.app envroute keys create``, then
requests through Flask's test client. Django: migrations (both databases) and keys made by
the real ``manage.py``, then real HTTP to a real gunicorn with two workers. Both: the
example's own tests, run as the README says (``pytest -p envroute.testing``). Writes are
checked in the SQLite files themselves.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import BIN, free_port, gunicorn_command, running

ROOT = Path(__file__).resolve().parents[2]
SECRET = "examples-test-secret-0123456789-abcdefghij"
LIVE_1, LIVE_2 = "ch_live_000000000000000000000001", "ch_live_000000000000000000000002"
TEST_1, TEST_2 = "ch_test_000000000000000000000001", "ch_test_000000000000000000000002"


def run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def create_key(command: list[str], env: dict[str, str], environment: str) -> dict[str, Any]:
    created: dict[str, Any] = json.loads(run(
        [*command, "create", "--environment", environment, "--json"], env))
    return created


def charge_ids(path: Path) -> list[str]:
    """The ``charges`` table read straight from a SQLite file."""
    with closing(sqlite3.connect(path)) as db, db:
        return [row[0] for row in db.execute("SELECT id FROM charges_charge ORDER BY id")]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "ENVROUTE_SECRET": SECRET,
            "EXAMPLE_FLASK_INSTANCE": str(tmp_path / "flask-instance"),
            "EXAMPLE_DJANGO_DB": str(tmp_path / "django.sqlite3"),
            "EXAMPLE_DJANGO_SANDBOX_DB": str(tmp_path / "django-sandbox.sqlite3")}


@pytest.mark.slow
def test_flask_example(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    keys_command = [str(BIN / "flask"), "--app", "example_flask.app", "envroute", "keys"]
    test_key = create_key(keys_command, env, "sandbox")["key"]
    live_key = create_key(keys_command, env, "production")["key"]
    assert test_key.startswith("sk_test_") and live_key.startswith("sk_live_")

    for name in ("ENVROUTE_SECRET", "EXAMPLE_FLASK_INSTANCE"):
        monkeypatch.setenv(name, env[name])
    from example_flask.app import create_app

    client = create_app().test_client()
    sandbox = client.get("/v1/charges", auth=(test_key, ""))
    live = client.get("/v1/charges", headers={"Authorization": f"Bearer {live_key}"})
    assert sandbox.json["livemode"] is False
    assert [c["id"] for c in sandbox.json["data"]] == [TEST_1, TEST_2]
    assert live.json["livemode"] is True
    assert [c["id"] for c in live.json["data"]] == [LIVE_1, LIVE_2]

    created = client.post("/v1/charges", json={"amount": 500}, auth=(live_key, ""))
    assert created.status_code == 201 and created.json["id"].startswith("ch_live_")
    mock = client.post("/v1/charges", json={"amount": 700}, auth=(test_key, ""))
    assert mock.status_code == 201 and mock.json["id"].startswith("ch_test_")
    ids = [c["id"] for c in client.get("/v1/charges", auth=(live_key, "")).json["data"]]
    assert ids == [LIVE_1, LIVE_2, created.json["id"]]
    instance = Path(env["EXAMPLE_FLASK_INSTANCE"])
    with closing(sqlite3.connect(instance / "charges.db")) as db, db:
        assert sorted(r[0] for r in db.execute("SELECT id FROM charges")) == sorted(ids)
    with closing(sqlite3.connect(instance / "sandbox.db")) as db, db:
        assert sorted(r[0] for r in db.execute("SELECT id FROM charges")) == sorted(
            [TEST_1, TEST_2, mock.json["id"]])

    assert client.get(f"/v1/charges/{LIVE_1}", auth=(live_key, "")).json["amount"] == 129900
    missing = client.get(f"/v1/charges/{LIVE_1}", auth=(test_key, ""))
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"
    assert missing.json["code"] == "resource_missing"

    refused = client.get("/v1/charges")
    assert refused.status_code == 401
    assert refused.content_type == "application/problem+json"


@pytest.mark.slow
def test_flask_examples_own_tests(env: dict[str, str]) -> None:
    """``pytest -p envroute.testing example_flask/test_example.py``, as the README says."""
    out = run([sys.executable, "-m", "pytest", "-q", "-p", "envroute.testing",
               "-p", "no:cacheprovider", "example_flask/test_example.py"], env)
    assert "3 passed" in out


@pytest.mark.slow
def test_django_example_under_gunicorn(env: dict[str, str]) -> None:
    manage = [sys.executable, "example_django/manage.py"]
    run([*manage, "migrate", "--verbosity", "0"], env)
    run([*manage, "migrate", "--database", "sandbox", "--verbosity", "0"], env)
    run([*manage, "check", "--fail-level", "WARNING"], env)
    test_key = create_key([*manage, "envroute_keys"], env, "sandbox")["key"]
    live_key = create_key([*manage, "envroute_keys"], env, "production")["key"]

    port = free_port()
    command = [*gunicorn_command("exampleproject.wsgi", port, workers=2),
               "--chdir", str(ROOT / "example_django")]
    with running(command, port=port, env=env):
        url = f"http://127.0.0.1:{port}/v1/charges"
        sandbox = requests.get(url, auth=(test_key, ""), timeout=10)
        live = requests.get(url, headers={"Authorization": f"Bearer {live_key}"}, timeout=10)
        assert sandbox.status_code == 200 and live.status_code == 200
        assert sandbox.json()["livemode"] is False
        assert [c["id"] for c in sandbox.json()["data"]] == [TEST_1, TEST_2]
        assert live.json()["livemode"] is True
        assert [c["id"] for c in live.json()["data"]] == [LIVE_1, LIVE_2]
        assert sandbox.headers["Request-Id"] != live.headers["Request-Id"]

        created = requests.post(url, json={"amount": 500}, auth=(live_key, ""), timeout=10)
        assert created.status_code == 201 and created.json()["id"].startswith("ch_live_")
        mock = requests.post(url, json={"amount": 700}, auth=(test_key, ""), timeout=10)
        assert mock.status_code == 201 and mock.json()["id"].startswith("ch_test_")
        for _ in range(4):  # whichever worker answers, the databases are the same
            listed = requests.get(url, auth=(live_key, ""), timeout=10).json()["data"]
            assert [c["id"] for c in listed] == [LIVE_1, LIVE_2, created.json()["id"]]
        assert charge_ids(Path(env["EXAMPLE_DJANGO_DB"])) == sorted(
            [LIVE_1, LIVE_2, created.json()["id"]])
        assert charge_ids(Path(env["EXAMPLE_DJANGO_SANDBOX_DB"])) == sorted(
            [TEST_1, TEST_2, mock.json()["id"]])

        own = requests.get(f"{url}/{TEST_1}", auth=(test_key, ""), timeout=10)
        assert own.status_code == 200 and own.json()["amount"] == 1000
        missing = requests.get(f"{url}/{LIVE_1}", auth=(test_key, ""), timeout=10)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"
        assert missing.json()["code"] == "resource_missing"
        assert missing.json()["request_id"] == missing.headers["Request-Id"]

        refused = requests.get(url, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.json()["request_id"] == refused.headers["Request-Id"]
        admin = requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=10)
        assert admin.status_code == 200 and "Request-Id" in admin.headers

    listed_keys = json.loads(run([*manage, "envroute_keys", "list", "--json"], env))
    assert {k["environment"] for k in listed_keys} == {"sandbox", "production"}
    assert test_key not in json.dumps(listed_keys)


@pytest.mark.slow
def test_django_examples_own_tests(env: dict[str, str]) -> None:
    """The README's command for ``charges/tests.py`` (pytest-django, ``envroute_key``)."""
    out = run([sys.executable, "-m", "pytest", "-q", "-p", "envroute.testing",
               "-p", "no:cacheprovider", "--ds", "exampleproject.settings",
               "charges/tests.py"], env, cwd=ROOT / "example_django")
    assert "3 passed" in out
