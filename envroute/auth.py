"""Verifying a credential into an :class:`~envroute.identity.Identity`, and what it records.

API keys are checked for shape and checksum first (no I/O), then looked up by their keyed
hash. A process keeps what it verified for ``[auth] cache_ttl`` (default 5 s) in a bounded
LRU (:mod:`envroute.cache`), filed under a 128-bit keyed hash of the key
(:class:`~envroute.keys.CacheToken`), so the hot path is two string hashes and one dict
look-up and touches the store once per key per TTL. A change a store
pushes (:meth:`Authenticator.on_change`) drops the verdicts it concerns at once; the TTL is
only the fallback when a notification is lost. JWTs go to :mod:`envroute.tokens` when
``[jwt]`` is configured.

An identity carries the *effective* metadata (§12): its customer's metadata, then the
key's own on top (for a JWT, the token's claims on top). A key that is disabled, or whose
customer is disabled, is ``disabled_key``; revocation stays ``revoked_key``.

**The cost of a flood.** The checksum is public, so anyone can make up keys that pass it.
Each distinct made-up key costs one HMAC, one CRC and one indexed store query (``1 +
len(previous_secrets)`` while rotating a secret), and its refusal is then cached apart from
the verified keys, in a smaller LRU (:data:`REFUSALS_MAX_ENTRIES`) with a short TTL
(:data:`REFUSAL_TTL`): a repeat of a made-up key costs no store query, and no number of
made-up keys can evict a verified key or clear the cache. What a flood of *distinct*
made-up keys still costs is one store query each: put a per-client rate limit in front of
the gateway (a load balancer or WAF) when that matters, since envroute's own rate limits
apply after authentication.

Usage (requests and errors per key per UTC day, ``last_used_at``) is counted in memory by
:meth:`Authenticator.record` and written by a background timer (:mod:`envroute.usage`);
keys found under a previous secret are re-hashed by the same timer (:mod:`envroute.secrets`).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import replace
from typing import Any, Protocol

from . import keys, metrics
from .cache import LRUCache
from .credentials import Credential
from .errors import CustomerNotFound
from .identity import Identity
from .metrics import auth_cache as count_cache
from .problems import Problem
from .secrets import Rehasher, secret_hashers
from .settings import EnvironmentSettings, Settings
from .stores.base import Change, CustomerRecord, KeyStore, SecretMatch
from .usage import Flusher, UsageRecorder, forget_after_fork

logger = logging.getLogger("envroute")

#: Verified keys (and known keys' refusals: revoked, disabled, …) one process keeps.
CACHE_MAX_ENTRIES = 50_000
#: Refusals of hashes the store does not know, kept apart so they cannot evict keys.
REFUSALS_MAX_ENTRIES = 10_000
#: At most this long (never longer than ``cache_ttl``) a refusal of an unknown hash is kept.
REFUSAL_TTL = 2.0
#: Customers looked up for JWTs (and for stores that do not join them to the key).
CUSTOMERS_MAX_ENTRIES = 10_000


class TokenVerifier(Protocol):
    """Turns a bearer JWT into an identity, or raises ``Problem("invalid_token", …)``."""

    def verify(self, token: str) -> Identity: ...


class _Verdict:
    """A cached outcome for one key hash: an identity with its validity, or a refusal.

    ``key_id`` and ``customer_id`` say which changes make it stale.
    """

    __slots__ = ("code", "customer_id", "detail", "identity", "key_id", "unrestricted",
                 "valid_until")

    def __init__(self, identity: Identity | None, valid_until: float = 0.0, code: str = "",
                 detail: str = "", key_id: str = "", customer_id: str | None = None) -> None:
        self.identity = identity
        #: the identity when no scope restricts it: what the request path's shortcut takes
        self.unrestricted = identity if identity is not None and not identity.scopes else None
        self.valid_until = valid_until
        self.code = code
        self.detail = detail
        self.key_id = key_id
        self.customer_id = customer_id


class CustomerCache:
    """Customers by id, for the same TTL as keys and dropped on the same changes."""

    def __init__(self, store: KeyStore, ttl: float) -> None:
        self.store = store
        self._cache: LRUCache[str, tuple[CustomerRecord | None]] = LRUCache(
            CUSTOMERS_MAX_ENTRIES, ttl)

    def get(self, customer_id: str) -> CustomerRecord | None:
        """The customer, or None if the store does not know it (StoreUnavailable goes up)."""
        entry = self._cache.get(customer_id)
        if entry is None:
            try:
                entry = (self.store.get_customer(customer_id),)
            except (CustomerNotFound, NotImplementedError):
                entry = (None,)
            self._cache.put(customer_id, entry)
        return entry[0]

    def discard(self, customer_id: str | None = None) -> None:
        if customer_id is None:
            self._cache.clear()
        else:
            self._cache.discard(customer_id)


def _disabled_customer(customer: CustomerRecord, display: str) -> Problem:
    return Problem("disabled_key", f"the customer of {display} is disabled")


class ApiKeyVerifier:
    """Checks an API key against the configured prefixes and the store, with two caches."""

    def __init__(self, store: KeyStore, settings: Settings,
                 customers: CustomerCache | None = None) -> None:
        self.store = store
        self.hash_key = keys.KeyHasher(settings.secret_key)
        self.token = keys.CacheToken()
        self._salt = self.token.salt
        self.previous = secret_hashers(settings)
        self.rehasher = Rehasher(store, settings)
        self.ttl = settings.auth.cache_ttl
        self.prefixes: dict[str, tuple[EnvironmentSettings, bool]] = {}
        for env in settings.environments.values():
            self.prefixes[env.prefix] = (env, False)
            self.prefixes[env.restricted_prefix] = (env, True)
        self.customers = customers or CustomerCache(store, self.ttl)
        self.verified: LRUCache[keys.Token, _Verdict] = LRUCache(CACHE_MAX_ENTRIES, self.ttl)
        self.refused: LRUCache[keys.Token, _Verdict] = LRUCache(
            REFUSALS_MAX_ENTRIES, min(self.ttl, REFUSAL_TTL))
        #: bumped by every change, so a verdict loaded across a change is not cached
        self._generation = 0

    def verify(self, key: str) -> Identity:
        """The identity for ``key``, or a :class:`Problem` saying why not.

        The hot path is two string hashes and one dict look-up: a verdict is cached under
        the key's cache token (:class:`~envroute.keys.CacheToken`), and since the token
        fixes the key, everything that depends only on the key (format, checksum, prefix,
        environment) is decided once, on the miss, before the store is asked. Only the
        expiry is re-checked on every hit.
        """
        token = self.token(key)
        verdict = self.verified.get(token)
        if verdict is None:
            verdict = self._load(key, token)
        else:
            count_cache("hit")
        identity = verdict.identity
        if identity is None:
            raise Problem(verdict.code, verdict.detail)
        if verdict.valid_until <= time.time():
            raise Problem("expired_key", f"the API key {identity.display} has expired")
        return identity

    def cached(self, key: str) -> Identity | None:
        """The identity of ``key`` if it was verified lately, is unexpired and unrestricted;
        else None, with nothing counted (the caller then runs :meth:`verify`). The request
        path's shortcut for the commonest request (issue 14)."""
        entries = self.verified.entries  # LRUCache.get, inline
        token = (hash(key), hash(key + self._salt))  # CacheToken.__call__, inline
        entry = entries.get(token)
        if entry is None or entry[0] <= time.monotonic():
            return None
        verdict = entry[1]
        identity = verdict.unrestricted
        if identity is None or verdict.valid_until <= time.time():
            return None
        try:  # noqa: SIM105 - contextlib.suppress costs more than the look-up itself
            entries.move_to_end(token)
        except KeyError:  # evicted by another thread meanwhile: still a hit
            pass
        if metrics.on:
            metrics.auth_cache("hit")
        return identity

    def _load(self, key: str, token: keys.Token) -> _Verdict:
        refusal = self.refused.get(token)
        if refusal is not None:  # a made-up key seen lately: no store query
            count_cache("hit")
            return refusal
        parsed = keys.parse(key)
        if parsed is None:  # a typo or a made-up key never reaches the store
            raise Problem("invalid_key", "the API key is malformed or mistyped "
                          "(its checksum does not match)")
        if parsed.prefix not in self.prefixes:
            raise Problem("invalid_key", f"no environment uses the prefix {parsed.prefix}")
        generation = self._generation
        count_cache("miss")
        match = self._lookup(key, self.hash_key(key))  # StoreUnavailable: 503, never a route
        if match is None:
            verdict = _Verdict(None, code="invalid_key",
                               detail=f"the API key {parsed.display} does not exist")
            if generation == self._generation:
                self.refused.put(token, verdict)
            return verdict
        verdict = self._verdict(match, parsed)
        if generation == self._generation:
            self.verified.put(token, verdict)
        return verdict

    def _lookup(self, key: str, digest: bytes) -> SecretMatch | None:
        match = self.store.lookup(digest)
        if match is not None and hmac.compare_digest(match.key_hash, digest):
            return match
        for hasher in self.previous:  # a secret being rotated out (§3)
            old = hasher(key)
            match = self.store.lookup(old)
            if match is not None and hmac.compare_digest(match.key_hash, old):
                self.rehasher.add(old, digest)
                return match
        return None

    def _verdict(self, match: SecretMatch, parsed: keys.ParsedKey) -> _Verdict:
        record = match.record
        display = parsed.display

        def refuse(code: str, detail: str) -> _Verdict:
            return _Verdict(None, code=code, detail=detail, key_id=record.id,
                            customer_id=record.customer_id)

        env, restricted = self.prefixes[parsed.prefix]
        if record.environment != env.name or restricted != bool(record.scopes):
            return refuse("invalid_key", f"the API key {display} does not belong to the "
                          "environment its prefix names")
        if record.revoked_at is not None:
            return refuse("revoked_key", f"the API key {display} has been revoked")
        if record.disabled_at is not None:
            return refuse("disabled_key", f"the API key {display} is disabled")
        customer = match.customer
        if customer is None and record.customer_id:  # a store that does not join it
            customer = self.customers.get(record.customer_id)
        metadata: dict[str, Any] = {}
        if customer is not None:
            if customer.disabled_at is not None:
                return refuse("disabled_key", _disabled_customer(customer, display).detail)
            metadata.update(customer.metadata)
        metadata.update(record.metadata)
        ends = [t.timestamp() for t in (record.expires_at, match.secret_expires_at) if t]
        identity = Identity(key_id=record.id, environment=record.environment,
                            metadata=metadata, source="api_key",
                            scopes=frozenset(record.scopes), display=display,
                            customer_id=record.customer_id)
        return _Verdict(identity, min(ends, default=float("inf")), key_id=record.id,
                        customer_id=record.customer_id)

    def on_change(self, change: Change) -> None:
        """Drop the verdicts a change makes stale (a backend change concerns none)."""
        if change.kind == "backend":
            return
        self._generation += 1
        target = change.target
        if change.kind == "key" and target:
            self.verified.discard_where(lambda v: v.key_id == target)
        elif change.kind == "customer" and target:
            self.verified.discard_where(lambda v: v.customer_id == target)
        else:
            self.verified.clear()
        # a new key or secret may now own a hash refused a moment ago
        self.refused.clear()

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached verdicts for ``key_id`` (every key when None). Prefer
        :meth:`Authenticator.on_change`; kept for callers written for 0.1."""
        self.on_change(Change("key", key_id) if key_id else Change("all"))


class Authenticator:
    """Dispatches a credential to the API-key or token verifier; records usage.

    ``close()`` writes what is pending and stops the background timer.
    """

    def __init__(self, api_keys: ApiKeyVerifier, tokens: TokenVerifier | None = None) -> None:
        self.api_keys = api_keys
        self.tokens = tokens
        self.customers = api_keys.customers
        self.usage = UsageRecorder(api_keys.store)
        forget_after_fork(self.usage)
        self._extend = self.usage.extend
        self.flusher = Flusher([self.usage.flush, api_keys.rehasher.flush])

    def authenticate(self, credential: Credential) -> Identity:
        if credential.is_jwt:
            if self.tokens is None:
                raise Problem("invalid_token", "this gateway does not accept JWTs")
            return self._with_customer(self.tokens.verify(credential.value))
        identity = self.api_keys.verify(credential.value)
        if not self.flusher.started and self.api_keys.rehasher.pending:
            self.flusher.ensure_started()
        return identity

    def _with_customer(self, identity: Identity) -> Identity:
        """A token's identity with its customer's metadata beneath the claims (§4)."""
        if not identity.customer_id:
            return identity
        customer = self.customers.get(identity.customer_id)
        if customer is None:  # a customer the store does not know adds nothing
            return identity
        if customer.disabled_at is not None:
            raise _disabled_customer(customer, "this token")
        if not customer.metadata:
            return identity
        return replace(identity, metadata={**customer.metadata, **identity.metadata})

    def record(self, identity: Identity, status: int) -> None:
        """Count one authenticated request of ``identity`` that was answered ``status``.

        Called once per request by the request path; in memory only. A JWT has no key
        and is not counted.
        """
        if identity.source == "api_key":
            self._extend((identity.key_id, status >= 400, time.time()))
            if not self.flusher.started:
                self.flusher.ensure_started()

    def on_change(self, change: Change) -> None:
        """What the store pushes (§11): key -> that key's verdicts; customer -> its keys'
        verdicts and the customer; all -> everything cached."""
        self.api_keys.on_change(change)
        if change.kind == "customer":
            self.customers.discard(change.target)
        elif change.kind == "all":
            self.customers.discard()

    def flush(self) -> None:
        """Write pending usage and re-hashes now (the timer does it every few seconds)."""
        self.flusher.run_once()

    def close(self) -> None:
        """Write what is pending and stop the background timer."""
        self.flusher.close()


def build_authenticator(settings: Settings, store: KeyStore) -> Authenticator:
    tokens: TokenVerifier | None = None
    if settings.jwt is not None:
        from .tokens import build_token_verifier  # PyJWT is an extra: imported only if used

        tokens = build_token_verifier(settings.jwt, settings)
    return Authenticator(ApiKeyVerifier(store, settings), tokens)
