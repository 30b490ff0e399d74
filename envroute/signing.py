"""Signed identity headers: how a proxied backend can trust ``Envroute-*``.

The proxy tells an upstream backend who is calling with ``Envroute-Key-Id``,
``Envroute-Environment``, ``Envroute-Metadata`` (compact JSON, sorted keys, ASCII) and,
when the identity has one, ``Envroute-Customer-Id``. A backend that only the gateway can
reach may read them as they are; one that anything else can reach (a shared network, a
misconfigured firewall) cannot tell them from forged ones. With ``signing_secret`` set,
the proxy adds, in the form of Stripe's webhook signatures::

    Envroute-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256>

over the five lines ``"<t>\\n<key id>\\n<environment>\\n<customer id or empty>\\n<metadata
JSON>"``, and a Python backend checks it with :func:`verify_signature`. The lines are
joined by LF, which no header value can hold, so no field can be re-split into others
(0.1's ``v1`` joined them with ``.``, and a key id holding dots, such as a token subject
that is an e-mail address, produced a signature that also verified other boundaries;
``v1`` is retired and never accepted). Several ``v2=`` values are accepted, so a backend
can verify while the secret is being rotated.

Security notes: the signature vouches for *who* is calling, not for the method, path or
body, and a captured set of headers can be replayed for ``tolerance`` seconds. Headers
where an identity header appears twice are refused: frameworks disagree about which copy
they read, and the check must cover exactly what the application reads. Keep
``signing_secret`` different from ``secret`` (the key store's hashing key), and keep the
backend unreachable except through the gateway where you can.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

KEY_ID_HEADER = "Envroute-Key-Id"
ENVIRONMENT_HEADER = "Envroute-Environment"
CUSTOMER_ID_HEADER = "Envroute-Customer-Id"
METADATA_HEADER = "Envroute-Metadata"
SIGNATURE_HEADER = "Envroute-Signature"

#: Seconds a signature stays valid either side of the verifier's clock.
DEFAULT_TOLERANCE = 300

_IDENTITY_NAMES = frozenset(h.lower() for h in (
    KEY_ID_HEADER, ENVIRONMENT_HEADER, CUSTOMER_ID_HEADER, METADATA_HEADER, SIGNATURE_HEADER))
#: A timestamp is at most 12 ASCII digits: ``int()`` of a long digit string is slow, and
#: past 4,300 digits it raises; neither may reach the verifier.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class HeaderSource(Protocol):
    """Anything with ``items()``: a dict, werkzeug's ``Headers`` or ``EnvironHeaders``,
    Django's ``request.headers``, or a WSGI environ (``HTTP_ENVROUTE_KEY_ID`` style keys).
    A plain list of ``(name, value)`` pairs is accepted too."""

    def items(self) -> Iterable[tuple[Any, Any]]: ...


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """The one serialisation of metadata that is sent and signed.

    Compact and key-sorted so that the same metadata always gives the same bytes; ASCII
    only (``ensure_ascii``), so the JSON is a valid header value whatever it contains.
    """
    return json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)


def _digest(signing_secret: str, timestamp: int, key_id: str, environment: str,
            customer_id: str, metadata: str) -> str:
    message = f"{timestamp}\n{key_id}\n{environment}\n{customer_id}\n{metadata}".encode()
    return hmac.new(signing_secret.encode(), message, hashlib.sha256).hexdigest()


def sign(signing_secret: str, key_id: str, environment: str, metadata: str, *,
         customer_id: str | None = None, timestamp: int | None = None) -> str:
    """The ``Envroute-Signature`` value for these identity headers (``metadata``: the JSON).

    ``timestamp`` defaults to now; pass one only to make a value reproducible.
    """
    if not signing_secret:
        raise ValueError("signing needs a non-empty signing_secret")
    t = int(time.time()) if timestamp is None else timestamp
    digest = _digest(signing_secret, t, key_id, environment, customer_id or "", metadata)
    return f"t={t},v2={digest}"


def identity_headers(key_id: str, environment: str, metadata: Mapping[str, Any],
                     signing_secret: str = "", *,
                     customer_id: str | None = None) -> list[tuple[str, str]]:
    """The ``Envroute-*`` headers the proxy sends: signed when a secret is configured."""
    encoded = metadata_json(metadata)
    headers = [(KEY_ID_HEADER, key_id), (ENVIRONMENT_HEADER, environment)]
    if customer_id:
        headers.append((CUSTOMER_ID_HEADER, customer_id))
    headers.append((METADATA_HEADER, encoded))
    if signing_secret:
        headers.append((SIGNATURE_HEADER, sign(signing_secret, key_id, environment, encoded,
                                               customer_id=customer_id)))
    return headers


def _identity_values(headers: HeaderSource | Iterable[tuple[Any, Any]]) -> dict[str, str] | None:
    """The identity headers by lower-case name, or None when one of them is repeated.

    WSGI environ keys (``HTTP_X_Y``) count as ``x-y``.
    """
    pairs = headers.items() if hasattr(headers, "items") else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str):
            continue
        lower = name.lower()
        if lower.startswith("http_"):
            lower = lower[5:].replace("_", "-")
        if lower not in _IDENTITY_NAMES:
            continue
        if lower in found or not isinstance(value, str):
            return None
        found[lower] = value
    return found


def verify_signature(headers: HeaderSource | Iterable[tuple[Any, Any]], signing_secret: str,
                     tolerance: int = DEFAULT_TOLERANCE, *, now: float | None = None) -> bool:
    """True only if ``headers`` carry identity headers signed with ``signing_secret``.

    ``headers`` is looked up case-insensitively (see :class:`HeaderSource`). False, and
    never an exception, when any identity header is missing or appears more than once,
    the signature is malformed or wrong, the timestamp is more than ``tolerance`` seconds
    from ``now`` (either way: stale or from the future), or ``signing_secret`` is empty:
    an unconfigured secret never verifies anything. Comparison is constant-time.
    """
    try:
        return _verify(headers, signing_secret, tolerance, now)
    except Exception:  # a verifier that raises on hostile input would be a 500: refuse
        return False


def _verify(headers: HeaderSource | Iterable[tuple[Any, Any]], signing_secret: str,
            tolerance: int, now: float | None) -> bool:
    if not signing_secret or not isinstance(signing_secret, str):
        return False
    values = _identity_values(headers)
    if values is None:
        return False
    key_id = values.get(KEY_ID_HEADER.lower())
    environment = values.get(ENVIRONMENT_HEADER.lower())
    metadata = values.get(METADATA_HEADER.lower())
    signature = values.get(SIGNATURE_HEADER.lower())
    customer_id = values.get(CUSTOMER_ID_HEADER.lower(), "")
    if key_id is None or environment is None or metadata is None or not signature:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in signature.split(","):
        label, _, value = part.strip().partition("=")
        if label == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                return False
            timestamp = int(value)
        elif label == "v2" and _HEX_DIGEST.fullmatch(value):
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(signing_secret, timestamp, key_id, environment, customer_id,
                       metadata).encode()
    matched = False
    for candidate in candidates:  # no early exit: the time taken does not depend on which
        matched |= hmac.compare_digest(expected, candidate.encode())
    return matched


__all__ = [
    "CUSTOMER_ID_HEADER",
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
