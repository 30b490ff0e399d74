"""§18 in Flask: ``flask_envroute.db.session`` per environment, with real databases.

Each case runs on two SQLite files and on two PostgreSQL databases made for the test
(random names, dropped after); writes are checked in the databases themselves.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, request
from flask_envroute import EnvRoute, current_identity, get_state
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from envroute import IssuedKey
from envroute.ids import new_id
from tests.integrations.conftest import Upstream, bearer, problem_of
from tests.metrics.support import delta, parse, value
from tests.support.services import POSTGRES_URL, require_postgres


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[int]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    from flask_envroute.db import dispose_engines

    if request.param == "sqlite":
        yield {env: f"sqlite:///{tmp_path / f'{env}.db'}" for env in ("sandbox", "production")}
        dispose_engines()
        return
    import psycopg

    require_postgres()
    names = {env: f"envroute_sa_{secrets.token_hex(6)}_{env}"
             for env in ("sandbox", "production")}
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield {env: f"{base}/{name}" for env, name in names.items()}
    finally:
        dispose_engines()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(url: str) -> list[tuple[Any, ...]]:
    """``entries`` read straight from the database, not through SQLAlchemy's session."""
    sql = "SELECT id, amount FROM entries ORDER BY amount"
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db, db:
            return db.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        return db.execute(sql).fetchall()


def build(config: dict[str, Any], urls: dict[str, str]) -> Flask:
    from flask_envroute.db import get_engine, session, using_environment

    app = Flask(__name__)
    app.config["ENVROUTE_DATABASES"] = urls
    EnvRoute(app, config={**config, "routes": [{"when": {}, "backend": "app"}]})

    @app.post("/v1/entries")
    def create() -> Any:
        entry = Entry(id=new_id("en", current_identity), amount=request.json["amount"])
        session.add(entry)
        session.commit()
        return {"id": entry.id}, 201

    @app.get("/v1/entries")
    def listed() -> Any:
        return {"data": [e.id for e in session.scalars(select(Entry))]}

    @app.get("/v1/entries/<envroute_id:entry_id>")
    def one(entry_id: str) -> Any:
        found = session.get(Entry, entry_id)
        return ({"id": found.id}, 200) if found else ({"error": "not here"}, 404)

    @app.post("/v1/cross")
    def cross() -> Any:
        session.add(Entry(id=new_id("en", current_identity), amount=1000))
        session.flush()  # written, not committed
        get_engine("production" if current_identity.environment == "sandbox" else "sandbox")
        session.commit()
        return {"reached": "the end"}

    with app.app_context():
        for env in urls:
            with using_environment(env):
                Base.metadata.create_all(get_engine())
    return app


@pytest.fixture
def app(base_config: dict[str, Any], urls: dict[str, str]) -> Iterator[Flask]:
    flask_app = build(base_config, urls)
    yield flask_app
    get_state(flask_app).store.close()


@pytest.fixture
def keys(app: Flask) -> dict[str, str]:
    manager = get_state(app).key_manager()
    make: Callable[[str], IssuedKey] = manager.create
    return {env: make(env).secret for env in ("sandbox", "production")}


def test_each_environment_uses_its_own_database(app: Flask, urls: dict[str, str],
                                                keys: dict[str, str]) -> None:
    client = app.test_client()
    made = {env: client.post("/v1/entries", json={"amount": amount},
                             headers=bearer(keys[env])).json["id"]
            for env, amount in (("sandbox", 5), ("production", 7))}
    assert rows(urls["sandbox"]) == [(made["sandbox"], 5)]
    assert rows(urls["production"]) == [(made["production"], 7)]
    for env in ("sandbox", "production"):
        assert client.get("/v1/entries", headers=bearer(keys[env])).json == {
            "data": [made[env]]}


@pytest.mark.parametrize(("owner", "caller", "status"), [
    pytest.param("production", "sandbox", 404, id="live-id-with-test-key"),
    pytest.param("sandbox", "production", 404, id="test-id-with-live-key"),
    pytest.param("production", "production", 200, id="own-id"),
])
def test_envroute_id_of_another_environment_is_resource_missing(
        app: Flask, keys: dict[str, str], owner: str, caller: str, status: int) -> None:
    client = app.test_client()
    made = client.post("/v1/entries", json={"amount": 1}, headers=bearer(keys[owner])).json["id"]
    response = client.get(f"/v1/entries/{made}", headers=bearer(keys[caller]))
    assert response.status_code == status
    if status == 404:
        problem = problem_of(response.data)
        assert problem["code"] == "resource_missing"
        assert response.content_type == "application/problem+json"
        assert problem["request_id"] == response.headers["Request-Id"]


@pytest.mark.parametrize("caller", ["sandbox", "production"])
def test_another_environments_engine_is_403_and_nothing_is_kept(
        app: Flask, urls: dict[str, str], keys: dict[str, str], caller: str) -> None:
    response = app.test_client().post("/v1/cross", headers=bearer(keys[caller]))
    assert response.status_code == 403
    assert problem_of(response.data)["code"] == "environment_mismatch"
    assert rows(urls["sandbox"]) == rows(urls["production"]) == []


def test_outside_a_request_the_session_needs_an_environment(app: Flask,
                                                            urls: dict[str, str]) -> None:
    from flask_envroute.db import CrossEnvironmentAccess, get_engine, session, using_environment

    with app.app_context():
        with pytest.raises(RuntimeError, match="using_environment"):
            session.scalars(select(Entry)).all()
        with using_environment("sandbox") as block:
            block.add(Entry(id="en_test_script", amount=3))
            block.commit()
            assert [e.id for e in session.scalars(select(Entry))] == ["en_test_script"]
            with pytest.raises(CrossEnvironmentAccess):
                get_engine("production")
    assert rows(urls["sandbox"]) == [("en_test_script", 3)]
    assert rows(urls["production"]) == []


def test_one_engine_per_url_per_process(app: Flask) -> None:
    from flask_envroute.db import get_engine, using_environment

    with app.app_context(), using_environment("sandbox"):
        assert get_engine() is get_engine("sandbox")


def test_requests_in_one_app_context_get_their_own_sessions(app: Flask, urls: dict[str, str],
                                                            keys: dict[str, str]) -> None:
    """Flask reuses an outer app context (and its ``g``) for test-client requests: the
    session must belong to the request, or a live request would reuse a sandbox one."""
    with app.app_context():
        client = app.test_client()
        made = client.post("/v1/entries", json={"amount": 4},
                           headers=bearer(keys["sandbox"])).json["id"]
        assert client.get("/v1/entries", headers=bearer(keys["production"])).json == {
            "data": []}
        assert client.get("/v1/entries", headers=bearer(keys["sandbox"])).json == {
            "data": [made]}
    assert rows(urls["production"]) == []


SCRAPE_TOKEN = "scrape-token-0123456789"


def wait_for_lines(caplog: pytest.LogCaptureFixture, request_ids: list[str]) -> list[str]:
    """The access lines of ``request_ids``, in that order, once all are written."""
    deadline = time.monotonic() + 30
    while True:
        lines = {request_id: r.getMessage() for r in caplog.records
                 if r.name == "envroute.access" for request_id in request_ids
                 if request_id in r.getMessage()}
        if len(lines) == len(request_ids) or time.monotonic() > deadline:
            return [lines.get(request_id, "(no line)") for request_id in request_ids]
        time.sleep(0.05)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_apps_refusals_carry_their_code_in_access_lines_and_metrics(
        base_config: dict[str, Any], urls: dict[str, str], caplog: pytest.LogCaptureFixture,
        fmt: str) -> None:
    """Over HTTP: the 404 of the converter and the 403 of the session's fence are logged
    and counted with their problem code, as the gateway's own refusals are."""
    config = {**base_config, "logging": {"format": fmt},
              "metrics": {"path": "/metrics", "token": SCRAPE_TOKEN}}
    flask_app = build(config, urls)
    manager = get_state(flask_app).key_manager()
    sandbox, live = (manager.create(env).secret for env in ("sandbox", "production"))
    caplog.set_level(logging.INFO, logger="envroute.access")
    try:
        with Upstream(flask_app) as server:
            def scrape() -> dict[Any, float]:
                answer = requests.get(f"{server.url}/metrics", timeout=30,
                                      headers=bearer(SCRAPE_TOKEN))
                assert answer.status_code == 200
                return parse(answer.text)

            created = requests.post(f"{server.url}/v1/entries", json={"amount": 1},
                                    timeout=30, headers=bearer(live))
            made = created.json()["id"]
            # counted when the server closes the response, which may be after the caller
            # has it: wait for its access line, or the scrape may come first
            wait_for_lines(caplog, [created.headers["Request-Id"]])
            before = scrape()
            caplog.clear()
            answers = [requests.get(f"{server.url}/v1/entries/{made}", headers=bearer(sandbox),
                                    timeout=30),
                       requests.post(f"{server.url}/v1/cross", headers=bearer(live),
                                     timeout=30)]
            ids = [answer.headers["Request-Id"] for answer in answers]
            lines = wait_for_lines(caplog, ids)  # written when the server closes a response
            changes = delta(before, scrape())
    finally:
        get_state(flask_app).store.close()
    assert [(a.status_code, problem_of(a.content)["code"]) for a in answers] == [
        (404, "resource_missing"), (403, "environment_mismatch")]
    expected = [(answer.headers["Request-Id"], env, answer.status_code, code)
                for answer, env, code in ((answers[0], "sandbox", "resource_missing"),
                                          (answers[1], "production", "environment_mismatch"))]
    if fmt == "json":
        logged = [json.loads(line) for line in lines]
        assert [(f["request_id"], f["environment"], f["status"], f["code"])
                for f in logged] == expected
    else:
        for line, (request_id, env, status, code) in zip(lines, expected, strict=True):
            assert line.startswith(f"{request_id} ") and f" env={env} " in line
            assert f" {status} code={code} " in line, line
    for env, code in (("sandbox", "resource_missing"), ("production", "environment_mismatch")):
        assert value(changes, "envroute_requests_total", environment=env, backend="app",
                     code=code) == 1, changes
    assert not [k for k in changes if k[0] == "envroute_requests_total"
                and ("code", "ok") in k[1]], changes
