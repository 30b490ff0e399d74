"""The admin's add and change forms on a SQLite database another process is writing.

Django runs an admin form in a transaction that reads (the object, the user) before the
store writes, and SQLite refuses such a read lock's upgrade at once while another process
writes ("database is locked"); it was a 500. The forms now take the store's write lock
first, so they wait for the other writer; where that cannot help (``ATOMIC_REQUESTS``
without ``transaction_mode = "IMMEDIATE"``: the request's transaction read first,
``envroute.W022``) the page says nothing was saved, and nothing is.

One SQLite file holds everything here (the ``sandbox`` alias: users, sessions, keys), as
in a project with one ``db.sqlite3``; another connection to it plays the gunicorn worker
that writes its usage.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client, override_settings
from django_envroute.gateway import get_key_manager
from django_envroute.models import APIKey, Customer

ALIAS = "sandbox"
pytestmark = pytest.mark.django_db(databases=["default", ALIAS], transaction=True)


class OneDatabase:
    """Every model in the one SQLite file."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return ALIAS

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return ALIAS

    def allow_relation(self, *args: Any, **hints: Any) -> bool:
        return True


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Client]:
    """The admin's browser, on a project whose only database is the SQLite file."""
    database = connections[ALIAS].settings_dict
    # time enough for the other writer to finish, however loaded the machine
    monkeypatch.setitem(database, "OPTIONS", {**database.get("OPTIONS", {}), "timeout": 60})
    connections[ALIAS].close()  # reopened with the timeout
    store = {"url": f"django://{ALIAS}"}
    with override_settings(DATABASE_ROUTERS=[OneDatabase()],
                           ENVROUTE={**settings.ENVROUTE, "store": store}):
        user = get_user_model().objects.create_superuser("admin", "a@example.com", "pw")
        browser = Client()
        browser.force_login(user)
        yield browser
    connections[ALIAS].close()


class Writer:
    """Another process writing (a gunicorn worker recording usage): it holds SQLite's
    write lock from :meth:`begin` to :meth:`commit`."""

    def __init__(self) -> None:
        self.connection = sqlite3.connect(connections[ALIAS].settings_dict["NAME"],
                                          isolation_level=None, timeout=60,
                                          check_same_thread=False)

    def begin(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.execute("UPDATE django_envroute_apikey SET name = name")

    def commit(self) -> None:
        self.connection.execute("COMMIT")


@pytest.fixture
def writer() -> Iterator[Writer]:
    other = Writer()
    yield other
    if other.connection.in_transaction:
        other.commit()
    other.connection.close()


def forms() -> list[Any]:
    return [
        pytest.param("/admin/django_envroute/apikey/{key}/change/",
                     lambda key: APIKey.objects.get(pk=key).name, id="key"),
        pytest.param("/admin/django_envroute/customer/acme/change/",
                     lambda key: Customer.objects.get(pk="acme").name, id="customer"),
    ]


def set_up() -> str:
    """A customer and a key, both named "before"; the key's id."""
    from django_envroute.gateway import get_router

    get_router().customers.create("acme", name="before")
    return get_key_manager().create("production", name="before").record.id


CHANGE = {"name": "after", "metadata": "{}"}


@pytest.mark.parametrize(("url", "name"), forms())
def test_a_form_waits_for_another_processs_write(admin: Client, writer: Writer, url: str,
                                                 name: Any) -> None:
    key = set_up()
    writer.begin()
    threading.Timer(0.5, writer.commit).start()
    response = admin.post(url.format(key=quote(key)), CHANGE)  # a 500 at once before the fix
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert name(key) == "after"


@pytest.mark.parametrize(("url", "name"), forms())
def test_with_atomic_requests_a_refused_save_is_a_message(
        admin: Client, writer: Writer, monkeypatch: pytest.MonkeyPatch, url: str,
        name: Any) -> None:
    key = set_up()
    monkeypatch.setitem(connections[ALIAS].settings_dict, "ATOMIC_REQUESTS", True)
    writer.begin()
    response = admin.post(url.format(key=quote(key)), CHANGE)
    assert response.status_code == 302  # back to the form, not a 500
    assert response["Location"] == url.format(key=quote(key))
    writer.commit()
    page = admin.get(response["Location"]).content.decode()
    assert "Not saved" in page and "database is locked" in page and "envroute.W022" in page
    assert name(key) == "before"
    assert admin.post(url.format(key=quote(key)), CHANGE).status_code == 302  # nobody writing
    assert name(key) == "after"
