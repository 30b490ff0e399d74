"""Verifying a credential into an :class:`~envroute.identity.Identity`.

API keys are checked for shape and checksum first (no I/O), then looked up by their keyed
hash. Each process keeps what it verified for ``[auth] cache_ttl`` (default 5 s), so the
hot path touches the store once per key per TTL; revocation therefore takes effect within
the TTL, or at once where the store pushes invalidations (:meth:`ApiKeyVerifier.invalidate`).
JWTs go to :mod:`envroute.tokens` when ``[jwt]`` is configured.

``last_used_at`` is collected in memory and written in batches by :class:`UsageRecorder`,
never once per request.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import logging
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import Protocol

from . import keys
from .credentials import Credential
from .errors import EnvrouteError
from .identity import Identity
from .problems import Problem
from .settings import EnvironmentSettings, Settings
from .stores.base import KeyStore, SecretMatch

logger = logging.getLogger("envroute")

CACHE_MAX_ENTRIES = 50_000
USAGE_FLUSH_SECONDS = 10.0


class TokenVerifier(Protocol):
    """Turns a bearer JWT into an identity, or raises ``Problem("invalid_token", …)``."""

    def verify(self, token: str) -> Identity: ...


class UsageRecorder:
    """Collects ``last_used_at`` per key and writes it every few seconds, in one batch.

    What is pending when the process exits (a gunicorn worker recycled or stopped) is
    written at exit, so a stop loses no usage.
    """

    def __init__(self, store: KeyStore, interval: float = USAGE_FLUSH_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self._pending: dict[str, float] = {}
        self._next_flush = time.monotonic() + interval
        self._lock = threading.Lock()
        _recorders.add(self)

    def record(self, key_id: str) -> None:
        self._pending[key_id] = time.time()
        if time.monotonic() >= self._next_flush and self._lock.acquire(blocking=False):
            try:
                self.flush()
            finally:
                self._lock.release()

    def flush(self) -> None:
        self._next_flush = time.monotonic() + self.interval
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self.store.record_usage(
                {k: datetime.fromtimestamp(t, UTC) for k, t in pending.items()})
        except EnvrouteError as exc:  # usage is best-effort; never fail a request for it
            logger.warning("could not record key usage: %s", exc)


_recorders: weakref.WeakSet[UsageRecorder] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for recorder in list(_recorders):
        with contextlib.suppress(Exception):  # the interpreter is going away: best effort
            recorder.flush()


class _Verdict:
    """A cached outcome for one key hash: an identity with its validity, or a refusal."""

    __slots__ = ("cached_until", "code", "detail", "identity", "valid_until")

    def __init__(self, cached_until: float, identity: Identity | None, valid_until: float,
                 code: str = "", detail: str = "") -> None:
        self.cached_until = cached_until
        self.identity = identity
        self.valid_until = valid_until
        self.code = code
        self.detail = detail


class ApiKeyVerifier:
    """Checks an API key against the configured prefixes and the store, with a cache."""

    def __init__(self, store: KeyStore, settings: Settings) -> None:
        self.store = store
        self.hash_key = keys.KeyHasher(settings.secret_key)
        self.ttl = settings.auth.cache_ttl
        self.prefixes: dict[str, tuple[EnvironmentSettings, bool]] = {}
        for env in settings.environments.values():
            self.prefixes[env.prefix] = (env, False)
            self.prefixes[env.restricted_prefix] = (env, True)
        self.usage = UsageRecorder(store)
        self._cache: dict[bytes, _Verdict] = {}

    def verify(self, key: str) -> Identity:
        """The identity for ``key``, or a :class:`Problem` saying why not.

        The hot path is one HMAC and one dict look-up: a verdict is cached under the keyed
        hash, and since the hash fixes the key, everything that depends only on the key
        (format, checksum, prefix, environment) is decided once, on the miss, before the
        store is asked. Only the expiry is re-checked on every hit.
        """
        digest = self.hash_key(key)
        verdict = self._cache.get(digest)
        if verdict is None or verdict.cached_until <= time.monotonic():
            verdict = self._load(key, digest)
        identity = verdict.identity
        if identity is None:
            raise Problem(verdict.code, verdict.detail)
        if verdict.valid_until <= time.time():
            raise Problem("expired_key", f"the API key {identity.display} has expired")
        self.usage.record(identity.key_id)
        return identity

    def _load(self, key: str, digest: bytes) -> _Verdict:
        parsed = keys.parse(key)
        if parsed is None:  # a typo or a made-up key never reaches the store
            raise Problem("invalid_key", "the API key is malformed or mistyped "
                          "(its checksum does not match)")
        if parsed.prefix not in self.prefixes:
            raise Problem("invalid_key", f"no environment uses the prefix {parsed.prefix}")
        match = self.store.lookup(digest)  # StoreUnavailable goes up: 503, never a route
        verdict = self._verdict(match, digest, parsed)
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[digest] = verdict
        return verdict

    def _verdict(self, match: SecretMatch | None, digest: bytes,
                 parsed: keys.ParsedKey) -> _Verdict:
        until = time.monotonic() + self.ttl
        if match is None or not hmac.compare_digest(match.key_hash, digest):
            return _Verdict(until, None, 0, "invalid_key",
                            f"the API key {parsed.display} does not exist")
        record = match.record
        env, restricted = self.prefixes[parsed.prefix]
        if record.environment != env.name or restricted != bool(record.scopes):
            return _Verdict(until, None, 0, "invalid_key", f"the API key {parsed.display} "
                            "does not belong to the environment its prefix names")
        if record.revoked_at is not None:
            return _Verdict(until, None, 0, "revoked_key",
                            f"the API key {parsed.display} has been revoked")
        ends = [t.timestamp() for t in (record.expires_at, match.secret_expires_at) if t]
        identity = Identity(key_id=record.id, environment=record.environment,
                            metadata=record.metadata, source="api_key",
                            scopes=frozenset(record.scopes), display=parsed.display)
        return _Verdict(until, identity, min(ends, default=float("inf")))

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached verdicts for ``key_id`` (every key when None): called on push."""
        if key_id is None:
            self._cache.clear()
            return
        for digest, verdict in list(self._cache.items()):
            if verdict.identity is not None and verdict.identity.key_id == key_id:
                self._cache.pop(digest, None)


class Authenticator:
    """Dispatches a credential to the API-key verifier or, for a JWT, the token verifier."""

    def __init__(self, api_keys: ApiKeyVerifier, tokens: TokenVerifier | None = None) -> None:
        self.api_keys = api_keys
        self.tokens = tokens

    def authenticate(self, credential: Credential) -> Identity:
        if credential.is_jwt:
            if self.tokens is None:
                raise Problem("invalid_token", "this gateway does not accept JWTs")
            return self.tokens.verify(credential.value)
        return self.api_keys.verify(credential.value)


def build_authenticator(settings: Settings, store: KeyStore) -> Authenticator:
    tokens: TokenVerifier | None = None
    if settings.jwt is not None:
        from .tokens import build_token_verifier  # PyJWT is an extra: imported only if used

        tokens = build_token_verifier(settings.jwt, settings)
    return Authenticator(ApiKeyVerifier(store, settings), tokens)
