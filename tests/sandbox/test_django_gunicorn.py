"""§18 in Django under gunicorn (two workers): the fence with real databases.

Two SQLite files, and two PostgreSQL databases made for the test (random names, dropped
after). Writes are read back from the databases themselves.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.proxy.conftest import logged
from tests.support.processes import free_port, gunicorn_command
from tests.support.services import POSTGRES_URL, require_postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest, tmp_path: Path
              ) -> Iterator[dict[str, dict[str, Any]]]:
    """SQLite under sync workers; PostgreSQL under gthread workers (4 threads each)."""
    if request.param == "sqlite":
        yield {alias: {"ENGINE": "django.db.backends.sqlite3", "ATOMIC_REQUESTS": True,
                       "NAME": str(tmp_path / f"{alias}.sqlite3")}
               for alias in ("default", "sandbox")}
        return
    import psycopg

    require_postgres()
    names = {alias: f"envroute_dj_{secrets.token_hex(6)}_{alias}"
             for alias in ("default", "sandbox")}
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {alias: {"ENGINE": "django.db.backends.postgresql", "ATOMIC_REQUESTS": True,
                       "HOST": "127.0.0.1", "PORT": 5432, "NAME": name}
               for alias, name in names.items()}
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(config: dict[str, Any]) -> list[tuple[Any, ...]]:
    sql = "SELECT id, amount FROM ledger_entry ORDER BY amount"
    if config["ENGINE"].endswith("sqlite3"):
        with closing(sqlite3.connect(config["NAME"])) as db, db:
            return db.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, dbname=config["NAME"]) as db:
        return db.execute(sql).fetchall()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_the_fence_under_gunicorn(databases: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    import os

    env = {**os.environ, "SANDBOX_TEST_DATABASES": json.dumps(databases)}
    made = subprocess.run([sys.executable, "-m", "tests.sandbox.django_wsgi"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    keys = json.loads(made.stdout)
    port = free_port()
    threaded = databases["default"]["ENGINE"].endswith("postgresql")
    command = gunicorn_command("tests.sandbox.django_wsgi:application", port,
                               worker_class="gthread" if threaded else "sync", threads=4)
    log = tmp_path / "gunicorn.log"
    with logged(command, port=port, log=log, env=env, cwd=ROOT):
        url = f"http://127.0.0.1:{port}/v1"
        ids = {}
        for env_name, amount in (("sandbox", 5), ("production", 7)):
            response = requests.post(f"{url}/entries", json={"amount": amount},
                                     headers=bearer(keys[env_name]), timeout=10)
            assert response.status_code == 201, response.text
            ids[env_name] = response.json()["id"]
        assert rows(databases["sandbox"]) == [(ids["sandbox"], 5)]
        assert rows(databases["default"]) == [(ids["production"], 7)]

        def listed(env_name: str) -> tuple[str, list[str]]:
            response = requests.get(f"{url}/entries", headers=bearer(keys[env_name]),
                                    timeout=30)
            return env_name, response.json()["data"]

        with ThreadPoolExecutor(8) as pool:  # both environments at once, every worker
            for env_name, data in pool.map(listed, ["sandbox", "production"] * 20):
                assert data == [ids[env_name]]

        missing = requests.get(f"{url}/entries/{ids['production']}",
                               headers=bearer(keys["sandbox"]), timeout=10)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"
        assert missing.json()["code"] == "resource_missing"
        refusals = {missing.headers["Request-Id"]: " 404 code=resource_missing "}

        for caller, other in (("sandbox", "default"), ("production", "sandbox")):
            for how in ("using", "raw", "swallowed"):
                refused = requests.post(f"{url}/cross/{how}", json={"other": other},
                                        headers=bearer(keys[caller]), timeout=10)
                assert refused.status_code == 403, (caller, how, refused.text)
                assert refused.json()["code"] == "environment_mismatch"
                assert refused.json()["request_id"] == refused.headers["Request-Id"]
                refusals[refused.headers["Request-Id"]] = " 403 code=environment_mismatch "
        # every view wrote first, then was refused: all of those writes were rolled back
        assert rows(databases["sandbox"]) == [(ids["sandbox"], 5)]
        assert rows(databases["default"]) == [(ids["production"], 7)]
        # the access lines (stderr, as gunicorn shows them) name each refusal's code
        deadline = time.monotonic() + 30
        while True:
            lines = {line.split(" ", 1)[0]: line for line in log.read_text().splitlines()}
            if set(refusals) <= set(lines) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for request_id, expected in refusals.items():
            assert expected in lines.get(request_id, "(no line)"), (expected, request_id)
