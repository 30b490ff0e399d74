"""§18 in Django: one database per environment, fenced, with real databases.

Each case runs twice: on two SQLite files and on two PostgreSQL databases (created for
this run and dropped after, by pytest-django). Writes are checked in the databases
themselves, with sqlite3 / psycopg, never only through the ORM under test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client, override_settings

from envroute import IssuedKey, fence
from envroute.ids import new_id
from tests.integrations.conftest import bearer, problem_of

from .ledger.models import Entry

ROUTER = "django_envroute.db.EnvironmentRouter"
PAIRS = [
    pytest.param(("sandbox", "live"), id="sqlite-files"),
    pytest.param(("pg_sandbox", "postgres"), id="postgresql", marks=pytest.mark.postgres),
]
ALL_ALIASES = ["default", "sandbox", "live", *(
    ["postgres", "pg_sandbox"] if "postgres" in settings.DATABASES else [])]


def rows(alias: str) -> list[tuple[Any, ...]]:
    """Read ``ledger_entry`` straight from the database file or server, not the ORM."""
    config = connections[alias].settings_dict
    sql = "SELECT id, amount, note FROM ledger_entry ORDER BY amount"
    if config["ENGINE"].endswith("sqlite3"):
        with closing(sqlite3.connect(config["NAME"])) as db, db:
            return db.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(host=config["HOST"], port=config["PORT"], dbname=config["NAME"],
                         user=config["USER"] or None) as db:
        return db.execute(sql).fetchall()


def access_line(caplog: pytest.LogCaptureFixture, request_id: str) -> str:
    """The one access line of the request ``request_id`` (as the text format writes it)."""
    (line,) = [r.getMessage() for r in caplog.records
               if r.name == "envroute.access" and r.getMessage().startswith(request_id)]
    return line


@pytest.fixture(params=PAIRS)
def aliases(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[str, str]]:
    sandbox, live = request.param
    if live not in settings.DATABASES:
        pytest.skip("PostgreSQL is not configured")
    for alias in (sandbox, live):  # the fence must work with ATOMIC_REQUESTS everywhere
        monkeypatch.setitem(connections.settings[alias], "ATOMIC_REQUESTS", True)
    config = {**settings.ENVROUTE, "routes": [{"when": {}, "backend": "app"}]}
    with override_settings(ROOT_URLCONF="tests.integrations.djangoapp.ledger.urls",
                           DATABASE_ROUTERS=[ROUTER], ENVROUTE=config,
                           ENVROUTE_DATABASES={"sandbox": sandbox, "production": live}):
        yield sandbox, live


@pytest.fixture
def keys(aliases: tuple[str, str], make_key: Callable[..., IssuedKey]) -> dict[str, str]:
    return {"sandbox": make_key("sandbox").secret, "production": make_key("production").secret}


pytestmark = pytest.mark.django_db(databases=ALL_ALIASES, transaction=True)


def test_each_environment_writes_and_reads_its_own_database(
        aliases: tuple[str, str], keys: dict[str, str]) -> None:
    sandbox, live = aliases
    client = Client()
    made = {env: client.post("/v1/entries", {"amount": amount}, content_type="application/json",
                             headers=bearer(keys[env])).json()["id"]
            for env, amount in (("sandbox", 5), ("production", 7))}
    assert made["sandbox"].startswith("en_test_") and made["production"].startswith("en_live_")
    assert rows(sandbox) == [(made["sandbox"], 5, "")]
    assert rows(live) == [(made["production"], 7, "")]
    for env in ("sandbox", "production"):
        listed = client.get("/v1/entries", headers=bearer(keys[env])).json()
        assert listed == {"environment": env, "data": [made[env]]}


@pytest.mark.parametrize(("owner", "caller", "status"), [
    pytest.param("production", "sandbox", 404, id="live-id-with-test-key"),
    pytest.param("sandbox", "production", 404, id="test-id-with-live-key"),
    pytest.param("sandbox", "sandbox", 200, id="own-id"),
])
def test_envroute_id_of_another_environment_is_resource_missing(
        aliases: tuple[str, str], keys: dict[str, str], owner: str, caller: str,
        status: int, caplog: pytest.LogCaptureFixture) -> None:
    made = Client().post("/v1/entries", {"amount": 3}, content_type="application/json",
                         headers=bearer(keys[owner])).json()["id"]
    with caplog.at_level("INFO", logger="envroute.access"):
        response = Client().get(f"/v1/entries/{made}", headers=bearer(keys[caller]))
    assert response.status_code == status
    line = access_line(caplog, response["Request-Id"])
    assert f" {status} code={'resource_missing' if status == 404 else '-'} " in line
    if status == 404:
        problem = problem_of(response.content)
        assert problem["code"] == "resource_missing"
        assert response["Content-Type"] == "application/problem+json"
        assert problem["request_id"] == response["Request-Id"]
        assert made in problem["detail"]


@pytest.mark.parametrize("how", ["using", "raw", "fenced", "swallowed"])
def test_touching_another_environment_is_403_and_rolls_back(
        aliases: tuple[str, str], keys: dict[str, str], how: str,
        caplog: pytest.LogCaptureFixture) -> None:
    sandbox, live = aliases
    with caplog.at_level("INFO", logger="envroute.access"):
        response = Client().post(f"/v1/cross/{how}", {"other": live},
                                 content_type="application/json",
                                 headers=bearer(keys["sandbox"]))
    assert response.status_code == 403
    assert " 403 code=environment_mismatch " in access_line(caplog, response["Request-Id"])
    problem = problem_of(response.content)
    assert problem["code"] == "environment_mismatch"
    assert live not in problem["detail"]  # aliases are the operator's business
    assert rows(sandbox) == []  # the view's first write was rolled back
    assert rows(live) == []


def test_raw_sql_on_the_own_connection_is_allowed(aliases: tuple[str, str],
                                                  keys: dict[str, str]) -> None:
    response = Client().get("/v1/own-raw", headers=bearer(keys["production"]))
    assert response.json() == {"count": 0, "alias": aliases[1]}


def test_outside_a_request_the_router_stays_out_of_the_way(aliases: tuple[str, str]) -> None:
    from django_envroute.db import EnvironmentRouter

    assert fence.current_environment() is None
    assert EnvironmentRouter().db_for_write(Entry) is None
    Entry.objects.using(aliases[1]).create(id="en_plain", amount=1)  # a management command
    assert rows(aliases[1]) == [("en_plain", 1, "")]


def test_using_environment_fences_a_block(aliases: tuple[str, str]) -> None:
    from django_envroute.db import CrossEnvironmentAccess, using_environment

    sandbox, live = aliases
    Entry.objects.using(live).create(id="en_live_x", amount=9)
    loaded = Entry.objects.using(live).get(pk="en_live_x")
    with using_environment("sandbox"):
        Entry.objects.create(id=new_id("en", "sandbox"), amount=2)
        assert [e.amount for e in Entry.objects.all()] == [2]
        for attempt in (lambda: list(Entry.objects.using(live).all()), loaded.save):
            with pytest.raises(CrossEnvironmentAccess):
                attempt()
    assert [r[1] for r in rows(sandbox)] == [2]
    assert rows(live) == [("en_live_x", 9, "")]


def test_a_request_cannot_switch_environment() -> None:
    from django_envroute.db import CrossEnvironmentAccess, using_environment

    from envroute import Identity

    token = fence.enter_request({"envroute.identity": Identity("key_1", "sandbox")})
    try:
        with using_environment("sandbox"):
            assert fence.current_environment() == "sandbox"
        with pytest.raises(CrossEnvironmentAccess), using_environment("production"):
            pass
    finally:
        fence.leave_request(token)
