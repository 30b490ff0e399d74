"""Signed identity headers: how a proxied backend can trust ``Envroute-*``.

The proxy tells an upstream backend who is calling with ``Envroute-Key-Id``,
``Envroute-Environment`` and ``Envroute-Metadata`` (compact JSON, sorted keys). A backend
that only the gateway can reach may read them as they are; one that anything else can
reach (a shared network, a misconfigured firewall) cannot tell them from forged ones.
With ``signing_secret`` set, the proxy adds, in the form of Stripe's webhook signatures::

    Envroute-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

over ``"<t>.<key id>.<environment>.<metadata JSON>"``, and a Python backend checks it with
:func:`verify_signature`. Several ``v1=`` values are accepted, so a backend can verify
while the secret is being rotated.

Security notes: the signature vouches for *who* is calling, not for the method, path or
body, and a captured set of headers can be replayed for ``tolerance`` seconds. Keep
``signing_secret`` different from ``secret`` (the key store's hashing key), and keep the
backend unreachable except through the gateway where you can.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

KEY_ID_HEADER = "Envroute-Key-Id"
ENVIRONMENT_HEADER = "Envroute-Environment"
METADATA_HEADER = "Envroute-Metadata"
SIGNATURE_HEADER = "Envroute-Signature"

#: Seconds a signature stays valid either side of the verifier's clock.
DEFAULT_TOLERANCE = 300


class HeaderSource(Protocol):
    """Anything with ``items()``: a dict, werkzeug's ``Headers``, Django's
    ``request.headers``, or a WSGI environ (``HTTP_ENVROUTE_KEY_ID`` style keys)."""

    def items(self) -> Iterable[tuple[Any, Any]]: ...


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """The one serialisation of metadata that is sent and signed.

    Compact and key-sorted so that the same metadata always gives the same bytes; ASCII
    only (``ensure_ascii``), so the JSON is a valid header value whatever it contains.
    """
    return json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)


def _digest(signing_secret: str, timestamp: int, key_id: str, environment: str,
            metadata: str) -> str:
    message = f"{timestamp}.{key_id}.{environment}.{metadata}".encode()
    return hmac.new(signing_secret.encode(), message, hashlib.sha256).hexdigest()


def sign(signing_secret: str, key_id: str, environment: str, metadata: str, *,
         timestamp: int | None = None) -> str:
    """The ``Envroute-Signature`` value for these identity headers (``metadata``: the JSON).

    ``timestamp`` defaults to now; pass one only to make a value reproducible.
    """
    if not signing_secret:
        raise ValueError("signing needs a non-empty signing_secret")
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(signing_secret, t, key_id, environment, metadata)}"


def identity_headers(key_id: str, environment: str, metadata: Mapping[str, Any],
                     signing_secret: str = "") -> list[tuple[str, str]]:
    """The ``Envroute-*`` headers the proxy sends: signed when a secret is configured."""
    encoded = metadata_json(metadata)
    headers = [(KEY_ID_HEADER, key_id), (ENVIRONMENT_HEADER, environment),
               (METADATA_HEADER, encoded)]
    if signing_secret:
        headers.append((SIGNATURE_HEADER, sign(signing_secret, key_id, environment, encoded)))
    return headers


def _folded(headers: HeaderSource) -> dict[str, str]:
    """Header values by lower-case name; WSGI environ keys (``HTTP_X_Y``) become ``x-y``."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        if name.startswith("HTTP_"):
            name = name[5:].replace("_", "-")
        found[name.lower()] = value
    return found


def verify_signature(headers: HeaderSource, signing_secret: str,
                     tolerance: int = DEFAULT_TOLERANCE, *, now: float | None = None) -> bool:
    """True only if ``headers`` carry identity headers signed with ``signing_secret``.

    ``headers`` is looked up case-insensitively (see :class:`HeaderSource`). False when
    any identity header is missing, the signature is malformed or wrong, the timestamp is
    more than ``tolerance`` seconds from ``now`` (either way: stale or from the future),
    or ``signing_secret`` is empty: an unconfigured secret never verifies anything.
    Comparison is constant-time.
    """
    if not signing_secret:
        return False
    values = _folded(headers)
    key_id = values.get(KEY_ID_HEADER.lower())
    environment = values.get(ENVIRONMENT_HEADER.lower())
    metadata = values.get(METADATA_HEADER.lower())
    signature = values.get(SIGNATURE_HEADER.lower())
    if key_id is None or environment is None or metadata is None or not signature:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in signature.split(","):
        label, _, value = part.strip().partition("=")
        if label == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif label == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(signing_secret, timestamp, key_id, environment, metadata)
    matched = False
    for candidate in candidates:  # no early exit: the time taken does not depend on which
        matched |= hmac.compare_digest(expected.encode(), candidate.encode("latin-1",
                                                                          "replace"))
    return matched


__all__ = [
    "DEFAULT_TOLERANCE",
    "ENVIRONMENT_HEADER",
    "KEY_ID_HEADER",
    "METADATA_HEADER",
    "SIGNATURE_HEADER",
    "identity_headers",
    "metadata_json",
    "sign",
    "verify_signature",
]
