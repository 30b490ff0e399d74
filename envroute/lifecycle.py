"""Creating, listing, revoking and rolling keys: the one implementation every front end
(``envroute keys``, ``flask envroute keys``, ``manage.py envroute_keys``, the Django admin)
calls, so the rules live in one place: the prefix comes from the environment and the
scopes, scopes must be defined in config, and a secret is returned exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import keys
from .errors import EnvrouteError
from .settings import Settings
from .stores.base import Change, KeyRecord, KeyStore, utcnow


class KeyUsageError(EnvrouteError):
    """A key operation asked for something the configuration does not allow."""


@dataclass(frozen=True)
class IssuedKey:
    """A record together with its secret: the only time the secret is ever available."""

    record: KeyRecord
    secret: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.record.id, "key": self.secret,
                "environment": self.record.environment,
                "metadata": dict(self.record.metadata), "scopes": list(self.record.scopes),
                "name": self.record.name, "expires_at": self.record.to_dict()["expires_at"]}


class KeyManager:
    """The key lifecycle. ``notify`` is called with each :class:`Change` once it is stored,
    so the process that made it honours it at once (``EnvRouter.keys`` passes the
    router's own invalidation); other processes hear it from the store."""

    def __init__(self, store: KeyStore, settings: Settings, *,
                 notify: Callable[[Change], None] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.notify = notify

    def _changed(self, change: Change) -> None:
        if self.notify is not None:
            self.notify(change)

    def create(self, environment: str, *, metadata: Mapping[str, Any] | None = None,
               scopes: Iterable[str] = (), name: str = "",
               expires_in: float | None = None) -> IssuedKey:
        env = self.settings.environments.get(environment)
        if env is None:
            known = ", ".join(self.settings.environments)
            raise KeyUsageError(f"unknown environment {environment!r} (configured: {known})")
        scope_list = tuple(dict.fromkeys(scopes))
        undefined = [s for s in scope_list if s not in self.settings.scopes]
        if undefined:
            raise KeyUsageError(f"scope {undefined[0]!r} is not defined in [scopes]")
        metadata = dict(metadata or {})
        if "environment" in metadata:
            raise KeyUsageError("'environment' is set by --environment, not by metadata")
        prefix = env.restricted_prefix if scope_list else env.prefix
        secret = keys.generate_secret(prefix)
        now = utcnow().replace(microsecond=0)
        record = KeyRecord(
            id=keys.generate_key_id(), environment=environment, prefix=prefix,
            last4=secret[-4:], created_at=now, metadata=metadata, name=name,
            scopes=scope_list,
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        )
        self.store.create(record, keys.hash_key(self.settings.secret_key, secret))
        return IssuedKey(self.store.get(record.id), secret)

    def list(self) -> list[KeyRecord]:
        return self.store.list_keys()

    def get(self, key_id: str) -> KeyRecord:
        return self.store.get(key_id)

    def revoke(self, key_id: str) -> KeyRecord:
        record = self.store.revoke(key_id, utcnow())
        self._changed(Change("key", key_id))
        return record

    def roll(self, key_id: str, *, expires_in: float = 0.0) -> IssuedKey:
        """A new secret for the same key; the old one works ``expires_in`` seconds more."""
        record = self.store.get(key_id)
        if record.revoked_at is not None:
            raise KeyUsageError(f"{key_id} is revoked; a revoked key cannot be rolled")
        secret = keys.generate_secret(record.prefix)
        now = utcnow()
        rolled = self.store.roll(key_id, keys.hash_key(self.settings.secret_key, secret),
                                 secret[-4:], now=now,
                                 retire_at=now + timedelta(seconds=expires_in))
        self._changed(Change("key", key_id))
        return IssuedKey(rolled, secret)
