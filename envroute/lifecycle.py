"""The key lifecycle: the one implementation every front end calls (``envroute keys``,
``flask envroute keys``, ``manage.py envroute_keys``, the Django admin, ``router.keys``),
so the rules live in one place: the prefix comes from the environment and the scopes,
scopes must be defined in config, reserved metadata names are refused, a customer must
exist, and a secret is returned exactly once.

Every change is stored first, then recorded (:mod:`envroute.audit`: audit record,
``notify``, ``[events] hooks``). The risk named here: a secret typed where an id belongs
(``keys show sk_live_…``) must never be echoed, so ids are checked by
:func:`envroute.guards.safe_id` before any store error can repeat them; the checks on what
an operator typed (metadata, names, secrets) are :mod:`envroute.guards`, shared with the
customer and backend managers, and importable from here as before.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import keys
from .audit import Managed, diff
from .errors import CustomerNotFound, KeyNotFound
from .guards import (
    RESERVED_METADATA,
    KeyUsageError,
    check_metadata,
    looks_like_secret,
    merged,
    refuse_secret,
    safe_id,
    since_days,
)
from .stores.base import Change, KeyRecord, UsageDay, iso, utcnow, utcnow_seconds

STATUSES = ("active", "disabled", "expired", "revoked")
_KEY_ID = re.compile(r"^key_[0-9A-Za-z]{1,64}$")


@dataclass(frozen=True)
class IssuedKey:
    """A record together with its secret: the only time the secret is ever available."""

    record: KeyRecord
    secret: str

    def to_dict(self) -> dict[str, Any]:
        data = self.record.to_dict()
        return {"id": self.record.id, "key": self.secret,
                "environment": self.record.environment,
                "customer_id": self.record.customer_id,
                "metadata": dict(self.record.metadata), "scopes": list(self.record.scopes),
                "name": self.record.name, "created_at": data["created_at"],
                "expires_at": data["expires_at"]}


@dataclass(frozen=True)
class Expiring:
    """A key, or one of its rolled secrets, that stops working at ``expires_at``."""

    record: KeyRecord
    expires_at: datetime
    what: str  # "key" or "rolled secret"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.record.id, "what": self.what, "environment":
                self.record.environment, "customer_id": self.record.customer_id,
                "name": self.record.name, "expires_at": iso(self.expires_at)}


class KeyManager(Managed):
    """The key lifecycle; ``notify`` and ``actor`` as :class:`envroute.audit.Managed`."""

    def _id(self, key_id: str) -> str:
        if _KEY_ID.match(key_id):
            return key_id
        if looks_like_secret(key_id, self.settings):
            raise KeyNotFound(f"{safe_id(key_id, self.settings)} is a secret, not a key id; "
                              "to revoke a leaked key: envroute keys revoke --secret -")
        raise KeyNotFound(f"no key {safe_id(key_id)}")

    def _changed(self, action: str, record: KeyRecord, changes: Mapping[str, Any]) -> None:
        self.recorder.changed(Change("key", record.id), action, record.id, changes,
                              customer_id=record.customer_id)

    # -- reading ------------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord:
        return self.store.get(self._id(key_id))

    def _customer(self, customer_id: str) -> None:
        """Raise CustomerNotFound for an unknown id, never echoing a secret typed as one."""
        if looks_like_secret(customer_id, self.settings):
            raise CustomerNotFound(f"no customer {safe_id(customer_id, self.settings)}")
        self.store.get_customer(customer_id)

    def list(self, *, environment: str | None = None, customer_id: str | None = None,
             status: str | None = None) -> list[KeyRecord]:
        """Every key, oldest first, narrowed by the filters that are given."""
        if status is not None and status not in STATUSES:
            raise KeyUsageError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
        if environment is not None and environment not in self.settings.environments:
            # A typo would list nothing and look like "no keys": say so, as --customer does.
            known = ", ".join(self.settings.environments)
            raise KeyUsageError(f"unknown environment {safe_id(environment, self.settings)!r}"
                                f" (configured: {known})")
        if customer_id is not None:
            self._customer(customer_id)  # CustomerNotFound for a typo
            records = self.store.list_customer_keys(customer_id)
        else:
            records = self.store.list_keys()
        now = utcnow()
        return [r for r in records
                if (environment is None or r.environment == environment)
                and (status is None or r.status(now) == status)]

    def usage(self, key_id: str, *, days: int = 30) -> builtins.list[UsageDay]:
        record = self.get(key_id)
        return self.store.usage([record.id], since_days(days))

    def expiring(self, within: float) -> builtins.list[Expiring]:
        """Keys, and rolled secrets still in their grace period, that stop working within
        ``within`` seconds (soonest first); revoked and disabled keys are left out."""
        now = utcnow()
        until = now + timedelta(seconds=within)
        live = {r.id: r for r in self.store.list_keys() if r.status(now) == "active"}
        found = [Expiring(r, r.expires_at, "key") for r in live.values()
                 if r.expires_at is not None and r.expires_at <= until]
        try:
            retiring = self.store.retiring_secrets(now, until)
        except NotImplementedError:  # a third-party store: key expiries only
            retiring = []
        for key_id, expires_at in retiring:
            record = live.get(key_id)
            if record is not None and (record.expires_at is None
                                       or expires_at < record.expires_at):
                found.append(Expiring(record, expires_at, "rolled secret"))
        return sorted(found, key=lambda e: (e.expires_at, e.record.id))

    # -- changing -----------------------------------------------------------------------

    def create(self, environment: str, *, metadata: Mapping[str, Any] | None = None,
               scopes: Iterable[str] = (), name: str = "", expires_in: float | None = None,
               customer_id: str | None = None) -> IssuedKey:
        env = self.settings.environments.get(environment)
        if env is None:
            known = ", ".join(self.settings.environments)
            raise KeyUsageError(f"unknown environment {safe_id(environment, self.settings)!r}"
                                f" (configured: {known})")
        scope_list = tuple(dict.fromkeys(scopes))
        undefined = [s for s in scope_list if s not in self.settings.scopes]
        if undefined:
            raise KeyUsageError(f"scope {safe_id(undefined[0], self.settings)!r} is not "
                                "defined in [scopes]")
        own = check_metadata(metadata or {}, "key")
        refuse_secret(name, "as a key's name")
        if expires_in is not None and expires_in <= 0:
            raise KeyUsageError("--expires-in must be longer than 0s (leave it out: "
                                "no expiry)")
        if customer_id is not None:
            self._customer(customer_id)  # unknown: CustomerNotFound, nothing made
        self.recorder.prepare()
        prefix = env.restricted_prefix if scope_list else env.prefix
        secret = keys.generate_secret(prefix)
        now = utcnow_seconds()
        record = KeyRecord(
            id=keys.generate_key_id(), environment=environment, prefix=prefix,
            last4=secret[-4:], created_at=now, metadata=own, name=name, scopes=scope_list,
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
            customer_id=customer_id,
        )
        self.store.create(record, keys.hash_key(self.settings.secret_key, secret),
                          fingerprint=keys.secret_fingerprint(self.settings.secret_key))
        stored = self.store.get(record.id)
        self._changed("key.created", stored, diff({}, _audited(stored)))
        return IssuedKey(stored, secret)

    def update(self, key_id: str, *, metadata: Mapping[str, Any] | None = None,
               set_meta: Mapping[str, Any] | None = None, unset_meta: Iterable[str] = (),
               name: str | None = None, expires_in: float | None = None,
               no_expiry: bool = False) -> KeyRecord:
        """Change the key's own metadata (``metadata`` replaces it whole; ``set_meta`` /
        ``unset_meta`` edit it), ``name`` and expiry. Nothing else of a key changes."""
        before = self.get(key_id)
        changes: dict[str, Any] = {}
        unset = list(unset_meta)
        if metadata is not None or set_meta or unset:
            base = metadata if metadata is not None else before.metadata
            changes["metadata"] = check_metadata(merged(base, set_meta, unset), "key")
        if name is not None:
            refuse_secret(name, "as a key's name")
            changes["name"] = name
        if expires_in is not None and no_expiry:
            raise KeyUsageError("give --expires-in or --no-expiry, not both")
        if expires_in is not None:
            if expires_in <= 0:
                raise KeyUsageError("--expires-in must be longer than 0s (or --no-expiry)")
            changes["expires_at"] = utcnow_seconds() + timedelta(seconds=expires_in)
        elif no_expiry:
            changes["expires_at"] = None
        current = {"metadata": dict(before.metadata), "name": before.name,
                   "expires_at": before.expires_at}
        changes = {k: v for k, v in changes.items() if v != current[k]}
        if not changes:  # nothing changes: nothing stored, audited or announced
            return before
        self.recorder.prepare()
        after = self.store.update_key(before.id, changes)
        self._record_change("key.updated", before, after)
        return after

    def _not_revoked(self, record: KeyRecord, what: str) -> None:
        if record.revoked_at is not None:
            raise KeyUsageError(f"{record.id} is revoked; revocation is permanent, a revoked "
                                f"key cannot be {what}")

    def disable(self, key_id: str) -> KeyRecord:
        before = self.get(key_id)
        self._not_revoked(before, "disabled")
        if before.disabled_at is not None:
            return before
        self.recorder.prepare()
        after = self.store.set_key_disabled(before.id, utcnow_seconds())
        self._record_change("key.disabled", before, after)
        return after

    def enable(self, key_id: str) -> KeyRecord:
        before = self.get(key_id)
        self._not_revoked(before, "enabled")
        if before.disabled_at is None:
            return before
        self.recorder.prepare()
        after = self.store.set_key_disabled(before.id, None)
        self._record_change("key.enabled", before, after)
        return after

    def revoke(self, key_id: str) -> KeyRecord:
        """Permanent. Every process refuses the key within about a second (§11)."""
        before = self.get(key_id)
        if before.revoked_at is not None:
            return before
        self.recorder.prepare()
        after = self.store.revoke(before.id, utcnow_seconds())
        self._record_change("key.revoked", before, after)
        return after

    def find_by_secret(self, secret: str) -> KeyRecord:
        """The key a (leaked) secret belongs to, under ``secret`` or a previous one."""
        secret = secret.strip()
        if keys.parse(secret) is None:
            # Whatever was read here was meant as a secret: never echo more than its ends.
            prefix = keys.split_prefix(secret) or ""
            shown = (f"{prefix if len(prefix) <= 8 else ''}…{secret[-4:]}"
                     if len(secret) > 12 else "the text read")
            raise KeyNotFound(f"{shown} is not a well-formed key (wrong length or checksum)")
        for secret_key in (self.settings.secret_key,
                           *(s.encode() for s in self.settings.previous_secrets)):
            record = self.store.find_key_by_hash(keys.hash_key(secret_key, secret))
            if record is not None:
                return record
        raise KeyNotFound(f"no key has the secret {safe_id(secret, self.settings)}")

    def revoke_secret(self, secret: str) -> KeyRecord:
        """Revoke the key a leaked secret belongs to (``keys revoke --secret -``)."""
        return self.revoke(self.find_by_secret(secret).id)

    def roll(self, key_id: str, *, expires_in: float = 0.0) -> IssuedKey:
        """A new secret for the same key; the old one works ``expires_in`` seconds more."""
        record = self.get(key_id)
        self._not_revoked(record, "rolled")
        self.recorder.prepare()
        secret = keys.generate_secret(record.prefix)
        now = utcnow_seconds()
        retire_at = now + timedelta(seconds=expires_in)
        rolled = self.store.roll(record.id, keys.hash_key(self.settings.secret_key, secret),
                                 secret[-4:], now=now, retire_at=retire_at,
                                 fingerprint=keys.secret_fingerprint(self.settings.secret_key))
        self._changed("key.rolled", rolled, {
            "last4": {"before": record.last4, "after": rolled.last4},
            "previous_secret_expires_at": {"before": None, "after": iso(retire_at)}})
        return IssuedKey(rolled, secret)

    def _record_change(self, action: str, before: KeyRecord, after: KeyRecord) -> None:
        self._changed(action, after, diff(_audited(before), _audited(after)))


def _audited(record: KeyRecord) -> dict[str, Any]:
    """The fields of a key the audit log compares (never a secret; ``last4`` is public)."""
    data = record.to_dict()
    for name in ("status", "last_used_at", "prefix", "created_at"):
        data.pop(name, None)
    if not data.get("customer_id"):
        data.pop("customer_id", None)
    return data


__all__ = ["RESERVED_METADATA", "STATUSES", "Expiring", "IssuedKey", "KeyManager",
           "KeyUsageError", "check_metadata", "looks_like_secret", "merged", "refuse_secret",
           "safe_id", "since_days"]
