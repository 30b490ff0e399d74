"""The ``django://`` key store: keys in the project's own database, through the ORM.

``django://`` (or ``django://default``) uses the ``default`` database; ``django://keys``
uses the alias ``keys`` from ``DATABASES``. This is the store under Django unless
``ENVROUTE["store"]["url"]`` names another, so keys live beside the project's data
(PostgreSQL in production) and their tables come from ``manage.py migrate``.

Changes reach every process (contract §11): on PostgreSQL each change sends ``NOTIFY`` in
its own transaction and a ``LISTEN`` thread per process hears it, exactly as the
``postgresql://`` store does (every worker of every gateway); on any other database a
change marker file is bumped after the commit and watched by every process on the machine.

Every database error (a missing table, a lost connection) is raised as
:class:`envroute.StoreUnavailable`, so the gateway fails closed with 503. Django manages
connections per thread and closes them at the end of each request, which makes the store
safe under gunicorn's forked, threaded workers. Records come from the one row mapper
(:mod:`envroute.stores.rows`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, overload

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import IntegrityError, ProgrammingError, connections, transaction
from django.db.models import Count, F, Q, QuerySet, Sum

from envroute import KeyNotFound, KeyRecord, KeyStore, StoreUnavailable
from envroute.errors import AlreadyExists, BackendNotFound, CustomerNotFound
from envroute.stores import rows
from envroute.stores.base import (
    AuditRecord,
    BackendRecord,
    Change,
    CustomerRecord,
    InvalidationSource,
    SecretMatch,
    UsageBatch,
    UsageDay,
    utcnow,
)
from envroute.stores.marker import ChangeMarker

from .models import APIKey, AuditEntry, Customer, KeySecret, KeyUsage, StoredBackend, fields_of

CHANNEL = "envroute_changes"


def database_alias(url: str) -> str:
    """``django://`` -> ``default``; ``django://keys`` -> ``keys``."""
    return url.partition("://")[2].strip("/") or "default"


@overload
def _to_db(moment: datetime) -> datetime: ...


@overload
def _to_db(moment: datetime | None) -> datetime | None: ...


def _to_db(moment: datetime | None) -> datetime | None:
    """Django stores aware datetimes with ``USE_TZ``, naive UTC ones without it."""
    if moment is None or settings.USE_TZ:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _match(secret: KeySecret) -> SecretMatch:
    key = secret.key
    row = fields_of(key, rows.KEY_COLUMNS)
    customer = key.customer
    row.update({f"{rows.JOINED}{name}": getattr(customer, name) if customer else None
                for name in rows.CUSTOMER_COLUMNS})
    row.update(hash=secret.hash, secret_expires_at=secret.expires_at)
    return rows.secret_match(row)


def _audit(entry: AuditEntry) -> AuditRecord:
    return rows.audit_record(fields_of(entry, rows.AUDIT_COLUMNS))


class DjangoStore(KeyStore, InvalidationSource):
    """:class:`envroute.KeyStore` over the models of :mod:`django_envroute.models`."""

    def __init__(self, url: str = "django://default") -> None:
        self.url = url
        self.alias = database_alias(url)
        self._callbacks: list[Callable[[Change], None]] = []
        self._marker: ChangeMarker | None = None
        self._listener: Any = None
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        self._watch()
        try:
            yield
        except DatabaseError as exc:
            hint = " (have you run manage.py migrate?)" if _missing_table(exc) else ""
            raise StoreUnavailable(f"Django database {self.alias!r}: {exc}{hint}") from exc

    @contextmanager
    def _write(self, change: Change | None = None) -> Iterator[None]:
        """One transaction; ``change`` is announced to every process once committed."""
        with self._errors(), transaction.atomic(using=self.alias):
            self._lock_for_writing()
            yield
            if change is not None:
                self._announce(change)

    def _lock_for_writing(self) -> None:
        """SQLite: take the database's write lock before the first read of the transaction.

        Django begins SQLite transactions deferred: a write that follows a read must
        upgrade a read lock, and SQLite refuses that at once ("database is locked", no
        busy wait) while another process is writing, since waiting could deadlock. A
        revocation made while a gateway worker wrote its usage failed that way (a 500 in
        the admin, an error from ``manage.py envroute_keys``). A write as the first
        statement waits for the other writer instead. Inside a transaction that already
        read (``ATOMIC_REQUESTS``) this cannot help: docs/django.md says what to set.
        """
        if connections[self.alias].vendor == "sqlite":  # matches no row; takes the lock
            self._keys().filter(pk__isnull=True).update(name=F("name"))

    @contextmanager
    def _batch(self) -> Iterator[None]:
        """A batch from the authenticator's timer thread: one transaction, and the thread's
        connection closed after it (Django closes connections at the end of a request;
        nobody would close this one, and the thread may end at any time)."""
        try:
            with self._write():
                yield
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection = connections[self.alias]
                if not connection.in_atomic_block:
                    connection.close()

    def _postgres(self) -> bool:
        return bool(connections[self.alias].vendor == "postgresql")

    def _announce(self, change: Change) -> None:
        if self._postgres():
            from envroute.stores.pglisten import payload

            with connections[self.alias].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload(change)])
        else:
            marker = self._marker_for_database()
            transaction.on_commit(marker.bump, using=self.alias)

    def _marker_for_database(self) -> ChangeMarker:
        if self._marker is None:
            self._marker = ChangeMarker(marker_path(connections[self.alias].settings_dict))
            self._marker.subscribe(self._notify)
        return self._marker

    def _keys(self) -> QuerySet[APIKey]:
        return APIKey.objects.using(self.alias)

    def _secrets(self) -> QuerySet[KeySecret]:
        return KeySecret.objects.using(self.alias)

    def _customers(self) -> QuerySet[Customer]:
        return Customer.objects.using(self.alias)

    def _backends(self) -> QuerySet[StoredBackend]:
        return StoredBackend.objects.using(self.alias)

    def migrate(self) -> None:
        """Nothing to do here: the tables come from ``manage.py migrate``."""

    def close(self) -> None:
        """Stop this process's listener or watcher and end the subscriptions (a store
        used again after ``close()`` works, without listening: its owner is gone)."""
        self._callbacks = []
        listener, self._listener = self._listener, None
        if listener is not None and listener.pid == os.getpid():
            listener.stop()
        if self._marker is not None:
            self._marker.stop()

    # -- changes --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Changes from every process (every host, on PostgreSQL); the listener or the
        marker watcher starts with this process's next use of the store."""
        self._callbacks.append(callback)

    def _watch(self) -> None:
        if not self._callbacks:
            return
        if not self._postgres():
            self._marker_for_database().watch()
            return
        pid = os.getpid()
        if self._listener is not None and self._listener.pid == pid:
            return
        with self._lock:
            if self._listener is None or self._listener.pid != pid:
                from envroute.stores.pglisten import Listener

                self._listener = Listener(
                    "", CHANNEL, self._notify,
                    connect_kwargs=connect_params(connections[self.alias].settings_dict))
                self._listener.start()

    def _notify(self, change: Change) -> None:
        """On the listener's (or watcher's) thread: a subscriber that reloads from the
        store (stored backends) opens a Django connection on this thread, closed here,
        since no request's end will close it."""
        try:
            for callback in list(self._callbacks):
                try:
                    callback(change)
                except Exception:  # one bad subscriber must not stop the listener
                    logging.getLogger("envroute").exception("change callback failed")
        finally:
            if threading.current_thread() is not threading.main_thread():
                connections.close_all()

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
                scopes=list(record.scopes), created_at=_to_db(record.created_at),
                expires_at=_to_db(record.expires_at), revoked_at=_to_db(record.revoked_at),
                disabled_at=_to_db(record.disabled_at), customer_id=record.customer_id,
            )
            self._secrets().create(key=key, hash=key_hash.hex(), fingerprint=fingerprint,
                                   created_at=_to_db(record.created_at))

    def _existing(self, key_id: str) -> None:
        if not self._keys().filter(pk=key_id).exists():
            raise KeyNotFound(f"no key {key_id}")

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        with self._write(Change("key", key_id)):
            self._existing(key_id)
            self._keys().filter(pk=key_id, revoked_at__isnull=True).update(
                revoked_at=_to_db(at))
        return self.get(key_id)

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime, fingerprint: str = "") -> KeyRecord:
        with self._write(Change("key", key_id)):
            key = self._keys().select_for_update().filter(pk=key_id).first()
            if key is None:
                raise KeyNotFound(f"no key {key_id}")
            retire = _to_db(retire_at)
            # Only the secret being replaced: an earlier roll's keeps its expiry (§3).
            self._secrets().filter(key_id=key_id, expires_at__isnull=True).update(
                expires_at=retire)
            self._secrets().create(key=key, hash=key_hash.hex(), created_at=_to_db(now),
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
            values["expires_at"] = _to_db(changes["expires_at"])
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
                    disabled_at=_to_db(at))
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
                        created_at=_to_db(record.created_at),
                        disabled_at=_to_db(record.disabled_at))
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
                    disabled_at=_to_db(at))
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
                        created_at=_to_db(now), updated_at=_to_db(record.updated_at or now))
            except IntegrityError:
                raise AlreadyExists(f"stored backend {record.name} already exists") from None
        return self.get_backend(record.name)

    def update_backend(self, record: BackendRecord) -> BackendRecord:
        with self._write(Change("backend", record.name)):
            updated = self._backends().filter(pk=record.name).update(
                url=record.url, timeout=record.timeout, connect_timeout=record.connect_timeout,
                strip_prefix=record.strip_prefix, pool_size=record.pool_size,
                updated_at=_to_db(record.updated_at or utcnow()))
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

    # -- usage and audit ------------------------------------------------------------------

    def write_usage(self, batch: UsageBatch) -> None:
        """Rows in one sorted order, keys before usage (no deadlock between workers)."""
        if not batch:
            return
        with self._batch():
            for key_id, at in sorted(batch.last_used.items()):
                moment = _to_db(at)
                self._keys().filter(pk=key_id).filter(
                    Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)
                ).update(last_used_at=moment)
            counts = sorted(batch.counts.items())
            known = set(self._keys().filter(
                pk__in={key_id for (key_id, _), _ in counts}).values_list("pk", flat=True))
            usage = KeyUsage.objects.using(self.alias)
            for (key_id, day), (requests, errors) in counts:
                if key_id not in known:
                    continue
                added = {"requests": F("requests") + requests, "errors": F("errors") + errors}
                if usage.filter(key_id=key_id, day=day).update(**added):
                    continue
                try:
                    with transaction.atomic(using=self.alias):
                        usage.create(key_id=key_id, day=day, requests=requests, errors=errors)
                except IntegrityError:  # another worker made the row first
                    usage.filter(key_id=key_id, day=day).update(**added)

    def usage(self, key_ids: Sequence[str], since: date) -> list[UsageDay]:
        if not key_ids:
            return []
        with self._errors():
            days = (KeyUsage.objects.using(self.alias)
                    .filter(key_id__in=list(key_ids), day__gte=since)
                    .values("day").annotate(requests=Sum("requests"), errors=Sum("errors"))
                    .filter(requests__gt=0).order_by("day"))
            return [rows.usage_day(day) for day in days]

    def append_audit(self, record: AuditRecord) -> None:
        with self._errors():
            AuditEntry.objects.using(self.alias).create(
                at=_to_db(record.at), actor=record.actor, action=record.action,
                kind=record.action.partition(".")[0], target=record.target,
                changes=dict(record.changes), customer_id=record.customer_id)

    def list_audit(self, *, key_id: str | None = None, customer_id: str | None = None,
                   backend: str | None = None,
                   since: datetime | None = None) -> list[AuditRecord]:
        entries = AuditEntry.objects.using(self.alias).order_by("-seq")
        if key_id is not None:
            entries = entries.filter(kind="key", target=key_id)
        if backend is not None:
            entries = entries.filter(kind="backend", target=backend)
        if customer_id is not None:
            entries = entries.filter(Q(customer_id=customer_id)
                                     | Q(kind="customer", target=customer_id))
        if since is not None:
            entries = entries.filter(at__gte=_to_db(since))
        with self._errors():
            return [_audit(entry) for entry in entries]

    # -- secret rotation ------------------------------------------------------------------

    def rehash(self, pairs: Mapping[bytes, tuple[bytes, str]]) -> None:
        with self._batch():
            for old, (new, fingerprint) in sorted(pairs.items()):
                self._secrets().filter(hash=old.hex()).update(hash=new.hex(),
                                                              fingerprint=fingerprint)

    def retiring_secrets(self, now: datetime, until: datetime) -> list[tuple[str, datetime]]:
        with self._errors():
            found = (self._secrets().filter(expires_at__isnull=False, expires_at__gt=_to_db(now),
                                            expires_at__lte=_to_db(until))
                     .order_by("expires_at", "key_id").values_list("key_id", "expires_at"))
            return [(key_id, rows.required_moment(at)) for key_id, at in found]

    def secret_fingerprints(self) -> dict[str, int]:
        now = _to_db(utcnow())
        with self._errors():
            found = (self._secrets().filter(key__revoked_at__isnull=True)
                     .filter(Q(key__expires_at__isnull=True) | Q(key__expires_at__gt=now))
                     .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
                     .values_list("fingerprint").order_by().annotate(n=Count("pk")))
            return {fingerprint: int(n) for fingerprint, n in found}


def marker_path(settings_dict: Mapping[str, Any]) -> str:
    """Next to a SQLite file; for another database, in the temporary directory, named
    after the database (every process on the machine that uses it finds the same file)."""
    name = str(settings_dict.get("NAME") or "")
    if settings_dict.get("ENGINE", "").endswith("sqlite3") and name and ":memory:" not in name \
            and not name.startswith("file:"):
        return f"{name}.changes"
    where = "|".join(str(settings_dict.get(part) or "") for part in
                     ("ENGINE", "HOST", "PORT", "NAME"))
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"envroute-{digest}.changes")


def connect_params(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters of a Django PostgreSQL database, for the LISTEN connection."""
    params: dict[str, Any] = {"dbname": settings_dict.get("NAME") or "postgres",
                              "connect_timeout": "3", "application_name": "envroute"}
    for setting, name in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"),
                          ("PORT", "port")):
        if settings_dict.get(setting):
            params[name] = str(settings_dict[setting])
    for option, value in (settings_dict.get("OPTIONS") or {}).items():
        if isinstance(value, (str, int)) and option not in (
                "isolation_level", "server_side_binding", "assume_role", "pool"):
            params[option] = str(value)
    return params


def _missing_table(exc: BaseException) -> bool:
    """The error says a table is missing (SQLite's "no such table", PostgreSQL's undefined
    table): the one case where running the migrations is the likely cure."""
    text = str(exc).lower()
    return isinstance(exc, ProgrammingError) or "no such table" in text \
        or ("relation" in text and "does not exist" in text)
