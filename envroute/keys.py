"""API key format, checksum and keyed hashing. Pure functions, no I/O.

A secret is ``<prefix><random><checksum>``: 32 base62 characters drawn from
:mod:`secrets`, then a 6-character base62 CRC32 of everything before it. The checksum
lets the gateway refuse a typo or a made-up key without touching the store, and lets
secret scanners recognise a leaked key with no false positives.

The store never sees a secret: it keeps ``HMAC-SHA256(secret_key, api_key)``. Because the
hash is keyed, a stolen database cannot be brute-forced offline without the server's
``secret`` too; because it is deterministic, a key is looked up by its hash in one indexed
query.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import string
import zlib
from dataclasses import dataclass
from typing import Any

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
#: A prefix is lower-case words joined and ended by underscores: ``sk_test_``, ``rk_eu_live_``.
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*_$")
_BODY = re.compile(r"^[0-9A-Za-z]+$")
KEY_ID_PREFIX = "key_"


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(text: str) -> str:
    """The 6-character base62 CRC32 of ``text`` (62**6 > 2**32, so it always fits)."""
    return _base62(zlib.crc32(text.encode()), CHECKSUM_LENGTH)


def generate_secret(prefix: str) -> str:
    """A new API key under ``prefix``: 32 random base62 characters and the checksum."""
    body = prefix + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def generate_key_id() -> str:
    """A record's public id (``key_…``): safe to log, show and put in URLs."""
    return KEY_ID_PREFIX + "".join(secrets.choice(BASE62) for _ in range(24))


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A key whose format and checksum are right; whether it exists is the store's call."""

    prefix: str
    last4: str

    @property
    def display(self) -> str:
        """How a key appears in logs and errors: its prefix and last four characters."""
        return f"{self.prefix}…{self.last4}"


def split_prefix(key: str) -> str | None:
    """The prefix of ``key`` (up to its last underscore), or None if it has none."""
    cut = key.rfind("_")
    return key[: cut + 1] if cut > 0 else None


def parse(key: str) -> ParsedKey | None:
    """Check a candidate key's shape and checksum; None if it cannot be one of ours.

    Only the shape is checked here; which prefixes are configured is the caller's
    business (:class:`envroute.auth.ApiKeyVerifier`).
    """
    prefix = split_prefix(key)
    if prefix is None or PREFIX_PATTERN.match(prefix) is None:
        return None
    rest = key[len(prefix) :]
    if len(rest) < RANDOM_LENGTH + CHECKSUM_LENGTH or _BODY.match(rest) is None:
        return None
    body, check = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum(body), check):
        return None
    return ParsedKey(prefix=prefix, last4=key[-4:])


def hash_key(secret_key: bytes, key: str) -> bytes:
    """The keyed hash the store keeps in place of ``key``."""
    return hmac.digest(secret_key, key.encode(), "sha256")


def secret_fingerprint(secret_key: bytes) -> str:
    """0.2 (§3): a public name for the store ``secret`` a hash was made under.

    A one-way HMAC of a fixed label, so a store can say "these keys were made under a
    secret that is neither ``secret`` nor a ``previous_secrets`` entry" without keeping
    anything from which the secret could be recovered. 16 hex characters.
    """
    return hmac.digest(secret_key, b"envroute secret fingerprint v1", "sha256").hex()[:16]


def _c_hmac(secret_key: bytes) -> Any:
    """OpenSSL's keyed SHA-256 HMAC object, or None where CPython was built without it."""
    try:
        from _hashlib import hmac_new  # CPython's OpenSSL binding, behind hmac.new
    except ImportError:
        return None
    try:
        return hmac_new(secret_key, digestmod="sha256")
    except (TypeError, ValueError):  # e.g. a FIPS build refusing it: the wrapper will say
        return None


class KeyHasher:
    """:func:`hash_key` for the hot path: keyed once, then copied per key.

    ``hmac.digest()`` releases the GIL around OpenSSL for every call, and under a threaded
    server taking it back queues the request behind other threads (measured: a fifth of
    gunicorn gthread's throughput). Copying a pre-keyed HMAC and feeding it a short key
    keeps the GIL (CPython releases it only for inputs of 2 KiB or more) and skips the
    key schedule. Where OpenSSL's HMAC object is available it is used directly: the
    :mod:`hmac` wrapper adds three Python calls per key (a sixth of the verifier's cost on a
    cache hit); the result is the same bytes, which a test checks against :func:`hash_key`.
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret_key: bytes) -> None:
        self._keyed: Any = _c_hmac(secret_key) or hmac.new(secret_key, digestmod="sha256")

    def __call__(self, key: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(key.encode())
        digest: bytes = mac.digest()
        return digest



#: A key's name in a process's caches (:class:`CacheToken`).
Token = tuple[int, int]


class CacheToken:
    """What a process files its verified keys under: 128 bits from two keyed hashes of the key.

    The cache needs a name for a key that is not the key (a memory dump shows no secret)
    and costs far less than the store's keyed HMAC, which is computed only on a cache miss
    (:class:`KeyHasher`). The name is two 64-bit SipHash-1-3 values, CPython's own string
    hash, which is keyed with 128 random bits per interpreter: one of the key, one of the
    key followed by a 128-bit salt drawn per process and never stored. A third of a
    salted SHA-256's cost (issue 14: OpenSSL's context copy and clean-up were a tenth of a
    cached request), and still nothing an attacker can aim at: a made-up key only takes
    another key's entry by colliding in 128 bits it never sees (a million made-up keys a
    second for a year against 50,000 cached keys: odds below 2**-67). Where
    ``PYTHONHASHSEED`` fixes the interpreter's hash key, the salt alone keys the second
    half.
    """

    __slots__ = ("salt",)

    def __init__(self) -> None:
        #: (read by :meth:`ApiKeyVerifier.cached`, which computes the token inline)
        self.salt = os.urandom(16).hex()

    def __call__(self, key: str) -> Token:
        return (hash(key), hash(key + self.salt))
