"""The part of the ``django://`` store that is not about one record: its transactions and
error translation, and the tables written in batches or appended to (usage, audit, secret
rotation). :class:`DjangoStoreCore` is the base of :class:`django_envroute.store.DjangoStore`,
as :class:`envroute.stores.sqlcore.SQLCore` is of the SQL stores.

Every database error (a missing table, a lost connection, a locked SQLite file) is raised
as :class:`envroute.StoreUnavailable`, so the gateway fails closed with 503; "have you run
manage.py migrate?" is added only when a table is missing. Django manages connections per
thread and closes them at the end of each request; a batch written from the
authenticator's timer thread closes its own, since no request's end will.

Batches (:meth:`DjangoStoreCore.write_usage`, :meth:`DjangoStoreCore.rehash`) touch rows
in one sorted order, keys before usage, so two workers flushing at once wait for each other
instead of deadlocking. Risk: a new batch query that walks rows in another order brings the
deadlock back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import overload

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import IntegrityError, ProgrammingError, connections, transaction
from django.db.models import Count, F, Q, QuerySet, Sum

from envroute import KeyStore, StoreUnavailable
from envroute.stores import rows
from envroute.stores.base import AuditRecord, Change, UsageBatch, UsageDay, utcnow

from .models import APIKey, AuditEntry, Customer, KeySecret, KeyUsage, StoredBackend, fields_of
from .storechanges import ChangeFeed


def database_alias(url: str) -> str:
    """``django://`` -> ``default``; ``django://keys`` -> ``keys``."""
    return url.partition("://")[2].strip("/") or "default"


@overload
def to_db(moment: datetime) -> datetime: ...


@overload
def to_db(moment: datetime | None) -> datetime | None: ...


def to_db(moment: datetime | None) -> datetime | None:
    """Django stores aware datetimes with ``USE_TZ``, naive UTC ones without it."""
    if moment is None or settings.USE_TZ:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def missing_table(exc: BaseException) -> bool:
    """The error says a table is missing (SQLite's "no such table", PostgreSQL's undefined
    table): the one case where running the migrations is the likely cure."""
    text = str(exc).lower()
    return isinstance(exc, ProgrammingError) or "no such table" in text \
        or ("relation" in text and "does not exist" in text)


class DjangoStoreCore(KeyStore):
    """Transactions on the Django database ``alias``, and the usage, audit and rotation
    tables; the records themselves are :class:`django_envroute.store.DjangoStore`'s."""

    def __init__(self, url: str = "django://default") -> None:
        self.url = url
        self.alias = database_alias(url)
        self._changes = ChangeFeed(self.alias)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        self._changes.watch()
        try:
            yield
        except DatabaseError as exc:
            hint = " (have you run manage.py migrate?)" if missing_table(exc) else ""
            raise StoreUnavailable(f"Django database {self.alias!r}: {exc}{hint}") from exc

    @contextmanager
    def _write(self, change: Change | None = None) -> Iterator[None]:
        """One transaction; ``change`` is announced to every process once committed."""
        with self._errors(), transaction.atomic(using=self.alias):
            self._lock_for_writing()
            yield
            if change is not None:
                self._changes.announce(change)

    def _lock_for_writing(self) -> None:
        """SQLite: take the database's write lock before the first read of the transaction.

        Django begins SQLite transactions deferred: a write that follows a read must
        upgrade a read lock, and SQLite refuses that at once ("database is locked", no
        busy wait) while another process is writing, since waiting could deadlock. A
        revocation made while a gateway worker wrote its usage failed that way (a 500 in
        the admin, an error from ``manage.py envroute_keys``). A write as the first
        statement waits for the other writer instead. Inside a transaction that already
        read (``ATOMIC_REQUESTS``) this cannot help: docs/django.md says what to set, and
        ``manage.py check`` warns (``envroute.W022``).
        """
        if connections[self.alias].vendor == "sqlite":  # matches no row; takes the lock
            self._keys().filter(pk__isnull=True).update(name=F("name"))

    @contextmanager
    def write_locked(self) -> Iterator[None]:
        """A transaction on the store's database that holds SQLite's write lock from its
        first statement, for a caller that reads before it changes something through the
        store: the admin's add and change forms (Django reads the object first). Inside a
        transaction that has already read (``ATOMIC_REQUESTS`` without ``transaction_mode
        = "IMMEDIATE"``, ``envroute.W022``) taking the lock can be refused at once: a
        :class:`envroute.StoreUnavailable`, raised before anything changed."""
        with transaction.atomic(using=self.alias):
            with self._errors():
                self._lock_for_writing()
            yield

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
        self._changes.close()

    # -- usage and audit ------------------------------------------------------------------

    def write_usage(self, batch: UsageBatch) -> None:
        """Rows in one sorted order, keys before usage (no deadlock between workers)."""
        if not batch:
            return
        with self._batch():
            for key_id, at in sorted(batch.last_used.items()):
                moment = to_db(at)
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
                at=to_db(record.at), actor=record.actor, action=record.action,
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
            entries = entries.filter(at__gte=to_db(since))
        with self._errors():
            return [rows.audit_record(fields_of(entry, rows.AUDIT_COLUMNS))
                    for entry in entries]

    # -- secret rotation ------------------------------------------------------------------

    def rehash(self, pairs: Mapping[bytes, tuple[bytes, str]]) -> None:
        with self._batch():
            for old, (new, fingerprint) in sorted(pairs.items()):
                self._secrets().filter(hash=old.hex()).update(hash=new.hex(),
                                                              fingerprint=fingerprint)

    def retiring_secrets(self, now: datetime, until: datetime) -> list[tuple[str, datetime]]:
        with self._errors():
            found = (self._secrets().filter(expires_at__isnull=False, expires_at__gt=to_db(now),
                                            expires_at__lte=to_db(until))
                     .order_by("expires_at", "key_id").values_list("key_id", "expires_at"))
            return [(key_id, rows.required_moment(at)) for key_id, at in found]

    def secret_fingerprints(self) -> dict[str, int]:
        now = to_db(utcnow())
        with self._errors():
            found = (self._secrets().filter(key__revoked_at__isnull=True)
                     .filter(Q(key__expires_at__isnull=True) | Q(key__expires_at__gt=now))
                     .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
                     .values_list("fingerprint").order_by().annotate(n=Count("pk")))
            return {fingerprint: int(n) for fingerprint, n in found}


__all__ = ["DjangoStoreCore", "database_alias", "missing_table", "to_db"]
