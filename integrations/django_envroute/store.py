"""The ``django://`` key store: keys in the project's own database, through the ORM.

``django://`` (or ``django://default``) uses the ``default`` database; ``django://keys``
uses the alias ``keys`` from ``DATABASES``. This is the store under Django unless
``ENVROUTE["store"]["url"]`` names another, so keys live beside the project's data
(PostgreSQL in production) and their tables come from ``manage.py migrate``.

Every database error (a missing table, a lost connection) is raised as
:class:`envroute.StoreUnavailable`, so the gateway fails closed with 503. Django manages
connections per thread and closes them at the end of each request, which makes the store
safe under gunicorn's forked, threaded workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import overload

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from envroute import KeyNotFound, KeyRecord, KeyStore, StoreUnavailable
from envroute.stores.base import SecretMatch

from .models import APIKey, KeySecret


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


def _from_db(moment: datetime | None) -> datetime | None:
    if moment is None or timezone.is_aware(moment):
        return moment
    return moment.replace(tzinfo=UTC)


def _record(key: APIKey) -> KeyRecord:
    created = _from_db(key.created_at)
    assert created is not None
    return KeyRecord(
        id=key.id, environment=key.environment, prefix=key.prefix, last4=key.last4,
        created_at=created, metadata=dict(key.metadata or {}), name=key.name,
        scopes=tuple(key.scopes or ()), expires_at=_from_db(key.expires_at),
        revoked_at=_from_db(key.revoked_at), last_used_at=_from_db(key.last_used_at),
    )


class DjangoStore(KeyStore):
    """:class:`envroute.KeyStore` over the :class:`~django_envroute.models.APIKey` model."""

    def __init__(self, url: str = "django://default") -> None:
        self.url = url
        self.alias = database_alias(url)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError as exc:
            raise StoreUnavailable(f"Django database {self.alias!r}: {exc} "
                                   "(have you run manage.py migrate?)") from exc

    def _keys(self) -> QuerySet[APIKey]:
        return APIKey.objects.using(self.alias)

    def _secrets(self) -> QuerySet[KeySecret]:
        return KeySecret.objects.using(self.alias)

    def migrate(self) -> None:
        """Nothing to do here: the tables come from ``manage.py migrate``."""

    # -- the hot path -----------------------------------------------------------------

    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        with self._errors():
            secret = self._secrets().select_related("key").filter(hash=key_hash.hex()).first()
        if secret is None:
            return None
        return SecretMatch(record=_record(secret.key), key_hash=bytes.fromhex(secret.hash),
                           secret_expires_at=_from_db(secret.expires_at))

    # -- the lifecycle ----------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord:
        with self._errors():
            key = self._keys().filter(pk=key_id).first()
        if key is None:
            raise KeyNotFound(f"no key {key_id}")
        return _record(key)

    def list_keys(self) -> list[KeyRecord]:
        with self._errors():
            return [_record(key) for key in self._keys().order_by("created_at", "id")]

    def create(self, record: KeyRecord, key_hash: bytes, *, fingerprint: str = "") -> None:
        with self._errors(), transaction.atomic(using=self.alias):
            key = self._keys().create(
                id=record.id, environment=record.environment, prefix=record.prefix,
                last4=record.last4, name=record.name, metadata=dict(record.metadata),
                scopes=list(record.scopes), created_at=_to_db(record.created_at),
                expires_at=_to_db(record.expires_at),
            )
            self._secrets().create(key=key, hash=key_hash.hex(),
                                   created_at=_to_db(record.created_at))

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        with self._errors():
            if not self._keys().filter(pk=key_id).exists():
                raise KeyNotFound(f"no key {key_id}")
            self._keys().filter(pk=key_id, revoked_at__isnull=True).update(
                revoked_at=_to_db(at))
        return self.get(key_id)

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime, fingerprint: str = "") -> KeyRecord:
        with self._errors(), transaction.atomic(using=self.alias):
            key = self._keys().select_for_update().filter(pk=key_id).first()
            if key is None:
                raise KeyNotFound(f"no key {key_id}")
            retire = _to_db(retire_at)
            self._secrets().filter(key_id=key_id).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=retire)).update(expires_at=retire)
            self._secrets().create(key=key, hash=key_hash.hex(), created_at=_to_db(now))
            self._keys().filter(pk=key_id).update(last4=last4)
        return self.get(key_id)

    def record_usage(self, used: Mapping[str, datetime]) -> None:
        with self._errors(), transaction.atomic(using=self.alias):
            for key_id, at in used.items():
                moment = _to_db(at)
                self._keys().filter(pk=key_id).filter(
                    Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)
                ).update(last_used_at=moment)
