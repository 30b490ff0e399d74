"""Customers and stored backends in the store contract (§12, §13): every store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from envroute.errors import AlreadyExists, BackendNotFound, CustomerNotFound
from envroute.stores import KeyStore

from .records import NOW, backend, customer


def test_create_get_and_list_customers(store: KeyStore) -> None:
    created = store.create_customer(customer("zeta", created_at=NOW + timedelta(seconds=1)))
    store.create_customer(customer("acme"))
    assert created == customer("zeta", created_at=NOW + timedelta(seconds=1))
    assert store.get_customer("acme") == customer("acme")
    assert [c.id for c in store.list_customers()] == ["acme", "zeta"]  # oldest first
    assert store.get_customer("acme").to_dict() == {
        "id": "acme", "name": "Acme", "metadata": {"tier": "pro", "backend": "shared"},
        "created_at": "2030-01-02T03:04:05.123456Z", "disabled_at": None, "status": "active"}


def test_a_taken_customer_id_is_refused(store: KeyStore) -> None:
    store.create_customer(customer())
    with pytest.raises(AlreadyExists):
        store.create_customer(customer(name="Someone else"))
    assert store.get_customer("acme").name == "Acme"


@pytest.mark.parametrize("operation", [
    pytest.param(lambda s: s.get_customer("nobody"), id="get"),
    pytest.param(lambda s: s.update_customer("nobody", {"name": "x"}), id="update"),
    pytest.param(lambda s: s.set_customer_disabled("nobody", NOW), id="disable"),
    pytest.param(lambda s: s.set_customer_disabled("nobody", None), id="enable"),
])
def test_unknown_customers(store: KeyStore, operation: Callable[[KeyStore], Any]) -> None:
    with pytest.raises(CustomerNotFound):
        operation(store)


@pytest.mark.parametrize(("changes", "name", "metadata"), [
    pytest.param({"metadata": {"backend": "dedicated-1"}}, "Acme", {"backend": "dedicated-1"},
                 id="metadata"),
    pytest.param({"name": "Acme Corp"}, "Acme Corp", {"tier": "pro", "backend": "shared"},
                 id="name"),
    pytest.param({}, "Acme", {"tier": "pro", "backend": "shared"}, id="nothing"),
])
def test_update_customer(store: KeyStore, changes: dict[str, Any], name: str,
                         metadata: dict[str, Any]) -> None:
    store.create_customer(customer())
    updated = store.update_customer("acme", changes)
    assert (updated.name, dict(updated.metadata)) == (name, metadata)
    assert updated == store.get_customer("acme")


def test_disable_and_enable_a_customer(store: KeyStore) -> None:
    store.create_customer(customer())
    assert store.set_customer_disabled("acme", NOW).status == "disabled"
    assert store.set_customer_disabled("acme", NOW + timedelta(hours=1)).disabled_at == NOW
    assert store.set_customer_disabled("acme", None).status == "active"


def test_add_get_list_update_and_remove_backends(store: KeyStore) -> None:
    assert store.add_backend(backend("b-two")) == backend("b-two")
    store.add_backend(backend("a-one"))
    assert [b.name for b in store.list_backends()] == ["a-one", "b-two"]  # by name
    later = NOW + timedelta(minutes=1)
    updated = store.update_backend(backend("a-one", url="http://10.0.0.2", timeout=3.0,
                                           pool_size=0, strip_prefix="", updated_at=later))
    assert updated == backend("a-one", url="http://10.0.0.2", timeout=3.0, pool_size=0,
                              strip_prefix="", updated_at=later)  # created_at kept
    assert store.get_backend("a-one") == updated
    assert store.remove_backend("a-one") == updated
    assert [b.name for b in store.list_backends()] == ["b-two"]


def test_a_taken_backend_name_is_refused(store: KeyStore) -> None:
    store.add_backend(backend())
    with pytest.raises(AlreadyExists):
        store.add_backend(backend(url="http://elsewhere"))
    assert store.get_backend("dedicated-1").url == "http://10.0.0.1:8080"


@pytest.mark.parametrize("operation", [
    pytest.param(lambda s: s.get_backend("nope"), id="get"),
    pytest.param(lambda s: s.update_backend(backend("nope")), id="update"),
    pytest.param(lambda s: s.remove_backend("nope"), id="remove"),
])
def test_unknown_backends(store: KeyStore, operation: Callable[[KeyStore], Any]) -> None:
    with pytest.raises(BackendNotFound):
        operation(store)


def test_a_backend_added_without_times_gets_them(store: KeyStore) -> None:
    added = store.add_backend(backend(created_at=None, updated_at=None))
    assert added.created_at is not None and added.updated_at == added.created_at
