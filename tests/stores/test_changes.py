"""§11: every change to a key, customer or stored backend reaches every process.

PostgreSQL (and ``django://`` on PostgreSQL) pushes each change as it is:
``Change(kind, target)``; SQLite (and ``django://`` on another database) says that
something changed: ``Change("all")``. Either way another process hears it within about a
second, and a gateway with a long ``cache_ttl`` refuses a revoked key at once. Waits are
conditions with a generous timeout, never fixed sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter, KeyManager
from envroute.stores import Change, InvalidationSource, KeyStore
from envroute.stores.base import utcnow
from tests.support.apps import SECRET, text_app

from .records import HASH, THIRD, backend, customer, key


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def pushes_each_change(store_url: str) -> bool:
    return store_url.startswith("postgresql") or store_url == "django://postgres"


OPERATIONS: list[Any] = [
    pytest.param(lambda s: s.revoke("key_one", utcnow()), Change("key", "key_one"),
                 id="revoke"),
    pytest.param(lambda s: s.roll("key_one", THIRD, "wxyz", now=utcnow(),
                                  retire_at=utcnow()), Change("key", "key_one"), id="roll"),
    pytest.param(lambda s: s.update_key("key_one", {"metadata": {"tier": "pro"}}),
                 Change("key", "key_one"), id="update-key"),
    pytest.param(lambda s: s.set_key_disabled("key_one", utcnow()), Change("key", "key_one"),
                 id="disable-key"),
    pytest.param(lambda s: s.set_key_disabled("key_one", None), Change("key", "key_one"),
                 id="enable-key"),
    pytest.param(lambda s: s.update_customer("acme", {"metadata": {"backend": "b"}}),
                 Change("customer", "acme"), id="update-customer"),
    pytest.param(lambda s: s.set_customer_disabled("acme", utcnow()),
                 Change("customer", "acme"), id="disable-customer"),
    pytest.param(lambda s: s.create_customer(customer("beta")), Change("customer", "beta"),
                 id="create-customer"),
    pytest.param(lambda s: s.add_backend(backend("new-one")), Change("backend", "new-one"),
                 id="add-backend"),
    pytest.param(lambda s: s.update_backend(backend(url="http://10.9.9.9")),
                 Change("backend", "dedicated-1"), id="update-backend"),
    pytest.param(lambda s: s.remove_backend("dedicated-1"), Change("backend", "dedicated-1"),
                 id="remove-backend"),
]


@pytest.mark.parametrize(("operation", "expected"), OPERATIONS)
def test_a_change_reaches_another_process(
        store: KeyStore, other_process: KeyStore, store_url: str,
        operation: Callable[[KeyStore], Any], expected: Change) -> None:
    store.create_customer(customer())
    store.create(key(customer_id="acme"), HASH)
    store.add_backend(backend())
    assert isinstance(other_process, InvalidationSource)
    heard: list[Change] = []
    other_process.subscribe(heard.append)
    other_process.list_backends()  # its first use starts the listener or the watcher
    if not pushes_each_change(store_url):
        expected = Change("all")
    # until this process surely hears: a change it can only learn from the store
    proof = Change("all") if expected.kind == "all" else Change("customer", "acme")

    def hears() -> bool:
        store.update_customer("acme", {"name": f"n{len(heard)}"})
        return proof in heard

    wait_for(hears, timeout=20)
    heard.clear()
    operation(store)
    wait_for(lambda: expected in heard)


def test_a_failed_change_announces_nothing(store: KeyStore, other_process: KeyStore,
                                           store_url: str) -> None:
    from envroute import KeyNotFound

    store.create_customer(customer())
    heard: list[Change] = []
    assert isinstance(other_process, InvalidationSource)
    other_process.subscribe(heard.append)
    other_process.list_keys()  # its first use starts the listener or the watcher
    pushes = pushes_each_change(store_url)
    proof = Change("customer", "acme") if pushes else Change("all")

    def hears() -> bool:  # (a change sent before the listener listens is never heard)
        store.update_customer("acme", {"name": f"n{len(heard)}"})
        return proof in heard

    wait_for(hears, timeout=20)  # until this process surely hears
    heard.clear()
    with pytest.raises(KeyNotFound):
        store.revoke("key_nobody", utcnow())
    store.create_customer(customer("beta"))  # a later change arrives; the failed one never does
    wait_for(lambda: Change("customer", "beta") in heard or (
        not pushes and Change("all") in heard))
    assert Change("key", "key_nobody") not in heard


def test_a_gateway_with_a_long_cache_ttl_refuses_a_revoked_key_at_once(
        store_url: str, open_stores: Callable[[], KeyStore]) -> None:
    settings = {"secret": SECRET, "store": {"url": store_url}, "auth": {"cache_ttl": "1h"}}
    gateway = EnvRouter(text_app("ok"), settings, store=open_stores())
    admin = open_stores()
    issued = KeyManager(admin, gateway.settings).create("sandbox")
    client = Client(gateway)
    headers = {"Authorization": f"Bearer {issued.secret}"}
    try:
        assert client.get("/", headers=headers).status_code == 200  # cached for an hour
        KeyManager(admin, gateway.settings).revoke(issued.record.id)

        def refused() -> bool:
            return client.get("/", headers=headers).status_code == 401

        wait_for(refused)
    finally:
        gateway.authenticator.close()  # its timer writes usage: before the store closes


def test_subscribers_that_fail_do_not_stop_the_others(
        store: KeyStore, other_process: KeyStore, store_url: str) -> None:
    heard: list[Change] = []

    def broken(change: Change) -> None:
        raise RuntimeError("a bad subscriber")

    assert isinstance(other_process, InvalidationSource)
    other_process.subscribe(broken)
    other_process.subscribe(heard.append)
    other_process.list_keys()
    store.create_customer(customer())
    wait_for(lambda: store.update_customer("acme", {"name": f"n{len(heard)}"}) is not None
             and bool(heard), timeout=20)
