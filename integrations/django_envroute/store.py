"""The ``django://`` key store: keys in the project's own database, through the ORM.

``django://`` (or ``django://default``) uses the ``default`` database; ``django://keys``
uses the alias ``keys`` from ``DATABASES``. This is the store under Django unless
``ENVROUTE["store"]["url"]`` names another, so keys live beside the project's data
(PostgreSQL in production) and their tables come from ``manage.py migrate``.

This module holds the records (keys, customers, stored backends); the rest is cut by job:
:mod:`django_envroute.storecore` (transactions, errors as :class:`envroute.StoreUnavailable`,
usage, audit, secret rotation) and :mod:`django_envroute.storechanges` (how a change reaches
every process, contract §11: ``NOTIFY`` on PostgreSQL, a change marker file elsewhere).
Records come from the one row mapper (:mod:`envroute.stores.rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from envroute import KeyNotFound, KeyRecord
from envroute.errors import AlreadyExists, BackendNotFound, CustomerNotFound
from envroute.stores import rows
from envroute.stores.base import (
    BackendRecord,
    Change,
    CustomerRecord,
    InvalidationSource,
    SecretMatch,
    utcnow,
)

from .models import KeySecret, fields_of
from .storechanges import CHANNEL, connect_params, marker_path
from .storecore import DjangoStoreCore, database_alias, to_db


def _match(secret: KeySecret) -> SecretMatch:
    key = secret.key
    row = fields_of(key, rows.KEY_COLUMNS)
    customer = key.customer
    row.update({f"{rows.JOINED}{name}": getattr(customer, name) if customer else None
                for name in rows.CUSTOMER_COLUMNS})
    row.update(hash=secret.hash, secret_expires_at=secret.expires_at)
    return rows.secret_match(row)


class DjangoStore(DjangoStoreCore, InvalidationSource):
    """:class:`envroute.KeyStore` over the models of :mod:`django_envroute.models`."""

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Changes from every process (every host, on PostgreSQL); the listener or the
        marker watcher starts with this process's next use of the store."""
        self._changes.subscribe(callback)

    # -- keys -----------------------------------------------------------------------------

    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        with self._errors():
            secret = self._secrets().select_related("key", "key__customer").filter(
                hash=key_hash.hex()).first()
        return _match(secret) if secret is not None else None

    def get(self, key_id: str) -> KeyRecord:
        with self._errors():
            key = self._keys().filter(pk=key_id).first()
        if key is None:
            raise KeyNotFound(f"no key {key_id}")
        return key.to_record()

    def list_keys(self) -> list[KeyRecord]:
        with self._errors():
            return [key.to_record() for key in self._keys().order_by("created_at", "id")]

    def list_customer_keys(self, customer_id: str) -> list[KeyRecord]:
        with self._errors():
            return [key.to_record() for key in
                    self._keys().filter(customer_id=customer_id).order_by("created_at", "id")]

    def create(self, record: KeyRecord, key_hash: bytes, *, fingerprint: str = "") -> None:
        with self._write():  # nobody can have cached a key that did not exist
            if (record.customer_id is not None
                    and not self._customers().filter(pk=record.customer_id).exists()):
                raise CustomerNotFound(f"no customer {record.customer_id}")
            key = self._keys().create(
                id=record.id, environment=record.environment, prefix=record.prefix,
                last4=record.last4, name=record.name, metadata=dict(record.metadata),
                scopes=list(record.scopes), created_at=to_db(record.created_at),
                expires_at=to_db(record.expires_at), revoked_at=to_db(record.revoked_at),
                disabled_at=to_db(record.disabled_at), customer_id=record.customer_id,
            )
            self._secrets().create(key=key, hash=key_hash.hex(), fingerprint=fingerprint,
                                   created_at=to_db(record.created_at))

    def _existing(self, key_id: str) -> None:
        if not self._keys().filter(pk=key_id).exists():
            raise KeyNotFound(f"no key {key_id}")

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        with self._write(Change("key", key_id)):
            self._existing(key_id)
            self._keys().filter(pk=key_id, revoked_at__isnull=True).update(
                revoked_at=to_db(at))
        return self.get(key_id)

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime, fingerprint: str = "") -> KeyRecord:
        with self._write(Change("key", key_id)):
            key = self._keys().select_for_update().filter(pk=key_id).first()
            if key is None:
                raise KeyNotFound(f"no key {key_id}")
            retire = to_db(retire_at)
            # Only the secret being replaced: an earlier roll's keeps its expiry (§3).
            self._secrets().filter(key_id=key_id, expires_at__isnull=True).update(
                expires_at=retire)
            self._secrets().create(key=key, hash=key_hash.hex(), created_at=to_db(now),
                                   fingerprint=fingerprint)
            self._keys().filter(pk=key_id).update(last4=last4)
        return self.get(key_id)

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        values: dict[str, Any] = {}
        if "metadata" in changes:
            values["metadata"] = dict(changes["metadata"])
        if "name" in changes:
            values["name"] = str(changes["name"])
        if "expires_at" in changes:
            values["expires_at"] = to_db(changes["expires_at"])
        with self._write(Change("key", key_id)):
            self._existing(key_id)
            if values:
                self._keys().filter(pk=key_id).update(**values)
        return self.get(key_id)

    def set_key_disabled(self, key_id: str, at: datetime | None) -> KeyRecord:
        with self._write(Change("key", key_id)):
            self._existing(key_id)
            if at is None:
                self._keys().filter(pk=key_id).update(disabled_at=None)
            else:
                self._keys().filter(pk=key_id, disabled_at__isnull=True).update(
                    disabled_at=to_db(at))
        return self.get(key_id)

    # -- customers ------------------------------------------------------------------------

    def create_customer(self, record: CustomerRecord) -> CustomerRecord:
        with self._write(Change("customer", record.id)):
            if self._customers().filter(pk=record.id).exists():
                raise AlreadyExists(f"customer {record.id} already exists")
            try:
                with transaction.atomic(using=self.alias):
                    self._customers().create(
                        id=record.id, name=record.name, metadata=dict(record.metadata),
                        created_at=to_db(record.created_at),
                        disabled_at=to_db(record.disabled_at))
            except IntegrityError:
                raise AlreadyExists(f"customer {record.id} already exists") from None
        return self.get_customer(record.id)

    def get_customer(self, customer_id: str) -> CustomerRecord:
        with self._errors():
            customer = self._customers().filter(pk=customer_id).first()
        if customer is None:
            raise CustomerNotFound(f"no customer {customer_id}")
        return customer.to_record()

    def list_customers(self) -> list[CustomerRecord]:
        with self._errors():
            return [c.to_record() for c in self._customers().order_by("created_at", "id")]

    def update_customer(self, customer_id: str, changes: Mapping[str, Any]) -> CustomerRecord:
        values: dict[str, Any] = {}
        if "metadata" in changes:
            values["metadata"] = dict(changes["metadata"])
        if "name" in changes:
            values["name"] = str(changes["name"])
        with self._write(Change("customer", customer_id)):
            if not self._customers().filter(pk=customer_id).exists():
                raise CustomerNotFound(f"no customer {customer_id}")
            if values:
                self._customers().filter(pk=customer_id).update(**values)
        return self.get_customer(customer_id)

    def set_customer_disabled(self, customer_id: str, at: datetime | None) -> CustomerRecord:
        with self._write(Change("customer", customer_id)):
            if not self._customers().filter(pk=customer_id).exists():
                raise CustomerNotFound(f"no customer {customer_id}")
            if at is None:
                self._customers().filter(pk=customer_id).update(disabled_at=None)
            else:
                self._customers().filter(pk=customer_id, disabled_at__isnull=True).update(
                    disabled_at=to_db(at))
        return self.get_customer(customer_id)

    # -- stored backends ------------------------------------------------------------------

    def add_backend(self, record: BackendRecord) -> BackendRecord:
        now = record.created_at or utcnow()
        with self._write(Change("backend", record.name)):
            if self._backends().filter(pk=record.name).exists():
                raise AlreadyExists(f"stored backend {record.name} already exists")
            try:
                with transaction.atomic(using=self.alias):
                    self._backends().create(
                        name=record.name, url=record.url, timeout=record.timeout,
                        connect_timeout=record.connect_timeout,
                        strip_prefix=record.strip_prefix, pool_size=record.pool_size,
                        created_at=to_db(now), updated_at=to_db(record.updated_at or now))
            except IntegrityError:
                raise AlreadyExists(f"stored backend {record.name} already exists") from None
        return self.get_backend(record.name)

    def update_backend(self, record: BackendRecord) -> BackendRecord:
        with self._write(Change("backend", record.name)):
            updated = self._backends().filter(pk=record.name).update(
                url=record.url, timeout=record.timeout, connect_timeout=record.connect_timeout,
                strip_prefix=record.strip_prefix, pool_size=record.pool_size,
                updated_at=to_db(record.updated_at or utcnow()))
            if not updated:
                raise BackendNotFound(f"no stored backend {record.name}")
        return self.get_backend(record.name)

    def remove_backend(self, name: str) -> BackendRecord:
        with self._write(Change("backend", name)):
            backend = self._backends().filter(pk=name).first()
            if backend is None:
                raise BackendNotFound(f"no stored backend {name}")
            record = backend.to_record()
            self._backends().filter(pk=name).delete()
        return record

    def get_backend(self, name: str) -> BackendRecord:
        with self._errors():
            backend = self._backends().filter(pk=name).first()
        if backend is None:
            raise BackendNotFound(f"no stored backend {name}")
        return backend.to_record()

    def list_backends(self) -> list[BackendRecord]:
        with self._errors():
            return [backend.to_record() for backend in self._backends().order_by("name")]


__all__ = ["CHANNEL", "DjangoStore", "connect_params", "database_alias", "marker_path"]
