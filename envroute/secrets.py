"""Rotating the store ``secret`` (§3): previous secrets, re-hashing on use, fingerprints.

The store keeps ``HMAC-SHA256(secret, key)``, so a new ``secret`` alone would turn every
key into ``invalid_key``. To rotate, an operator moves the old value into
``previous_secrets`` and sets a new ``secret``:

1. A key whose hash under ``secret`` is unknown is looked up under each previous secret
   in turn (only on a cache miss; a refusal is cached, so a made-up key costs
   ``1 + len(previous_secrets)`` store queries once per refusal TTL, not per request).
2. A key found under a previous secret is served at once, and its stored hash is queued
   for :class:`Rehasher`, which the background timer hands to ``store.rehash`` in one
   batch: never a write per request.
3. ``envroute check`` reports how many key secrets still need a previous secret
   (:func:`verify_store_secrets`); at 0 the old value can leave ``previous_secrets``.

The store remembers under which secret each hash was made, by fingerprint
(:func:`envroute.keys.secret_fingerprint`, a one-way HMAC of a label: it reveals nothing
of the secret). :func:`verify_store_secrets` compares them with the configuration, so a
``secret`` that changed by accident (a fresh ``export ENVROUTE_SECRET=$(…)``) stops
start-up, ``check`` and every ``keys``/``customers`` command with one line, instead of
every key answering ``invalid_key``. Hashes stored before 0.2 carry no fingerprint and
are not judged.
"""

from __future__ import annotations

import logging
import threading

from . import keys
from .errors import ConfigError, EnvrouteError
from .settings import Settings
from .stores.base import KeyStore

logger = logging.getLogger("envroute")

__all__ = ["Rehasher", "UnknownStoreSecret", "secret_hashers", "verify_store_secrets"]


class UnknownStoreSecret(ConfigError):
    """The store holds keys made under a secret that the configuration does not name."""


def verify_store_secrets(store: KeyStore, settings: Settings) -> int:
    """How many key secrets still need a ``previous_secrets`` entry to verify.

    Raises :class:`UnknownStoreSecret` when the store holds key secrets made under a secret
    that is neither ``secret`` nor in ``previous_secrets``: those keys could never verify.
    A store that keeps no fingerprints (one written for 0.1) answers 0.
    """
    try:
        counts = store.secret_fingerprints()
    except NotImplementedError:
        return 0
    current = keys.secret_fingerprint(settings.secret_key)
    previous = {keys.secret_fingerprint(s.encode()) for s in settings.previous_secrets}
    previous.discard(current)
    unknown = sum(n for fp, n in counts.items() if fp and fp != current and fp not in previous)
    if unknown:
        raise UnknownStoreSecret(
            f"the store holds {unknown} key secret{'s' if unknown != 1 else ''} made under "
            "a secret that is neither `secret` nor in `previous_secrets`, so they can never "
            "verify; set `secret` back to the value they were made with, or add that value "
            "to `previous_secrets` (with the new one as `secret`) to rotate",
            key="secret", source=settings.source)
    return sum(n for fp, n in counts.items() if fp in previous)


def secret_hashers(settings: Settings) -> tuple[keys.KeyHasher, ...]:
    """A hasher per previous secret (not repeating ``secret``), in the configured order."""
    seen = {settings.secret}
    hashers = []
    for value in settings.previous_secrets:
        if value not in seen:
            seen.add(value)
            hashers.append(keys.KeyHasher(value.encode()))
    return tuple(hashers)


class Rehasher:
    """Collects hashes to move under ``secret``; :meth:`flush` writes them in one batch.

    ``add`` is called on a cache miss that verified under a previous secret; ``flush``
    runs on the background timer. A failed batch is kept and tried again.
    """

    def __init__(self, store: KeyStore, settings: Settings) -> None:
        self.store = store
        self.fingerprint = keys.secret_fingerprint(settings.secret_key)
        self._pending: dict[bytes, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._failures = 0
        self._unsupported = False

    def add(self, old_hash: bytes, new_hash: bytes) -> None:
        with self._lock:
            self._pending[old_hash] = (new_hash, self.fingerprint)

    def flush(self) -> bool:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending or self._unsupported:
            return True
        try:
            self.store.rehash(dict(sorted(pending.items())))
        except NotImplementedError:
            self._unsupported = True
            logger.warning("the key store %s cannot re-hash keys (no rehash): keys made "
                           "under a previous secret keep needing it", type(self.store).__name__)
        except (EnvrouteError, OSError) as exc:
            with self._lock:
                for old, new in pending.items():
                    self._pending.setdefault(old, new)
            self._failures += 1
            if self._failures == 1:  # once when an outage starts, not on every tick
                logger.warning("could not re-hash %d key secrets; retrying every few "
                               "seconds: %s", len(pending), exc)
            return False
        else:
            logger.info("re-hashed %d key secrets under the current secret%s", len(pending),
                        f" after {self._failures} failed attempts" if self._failures else "")
            self._failures = 0
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)
