"""What every manager checks in what an operator typed, before anything is stored.

Keys (:mod:`envroute.lifecycle`), customers (:mod:`envroute.customers`) and stored
backends (:mod:`envroute.stored_backends`) take text from the CLI, the Flask and Django
commands, the Django admin's forms and the Python API; the rules for that text live here
once, so a front end cannot skip one:

- reserved metadata names (``environment``, ``customer_id``, ``key_id``) are refused (§3);
- a secret pasted as metadata or a name is refused: it would be stored, shown by every
  command, audited and sent to backends in ``Envroute-Metadata``;
- a secret typed where an id belongs is never echoed: :func:`safe_id` shows it as its
  prefix and ``last4``, before any store error can repeat it.

Every refusal is a :class:`KeyUsageError` (exit 1, one line). No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any

from . import keys
from .errors import EnvrouteError
from .settings import Settings
from .stores.base import utcnow

#: Metadata names that are the identity's own (§3): never set through metadata.
RESERVED_METADATA = frozenset({"environment", "customer_id", "key_id"})


class KeyUsageError(EnvrouteError):
    """A key operation asked for something the configuration does not allow."""


def looks_like_secret(text: str, settings: Settings | None = None) -> bool:
    """True for a well-formed secret, or anything under a configured key prefix."""
    if keys.parse(text) is not None:
        return True
    prefixes = {p for env in (settings.environments.values() if settings else ())
                for p in (env.prefix, env.restricted_prefix)}
    return any(text.startswith(prefix) for prefix in prefixes if prefix)


def safe_id(text: str, settings: Settings | None = None) -> str:
    """``text`` as it may be shown: a secret becomes ``prefix…last4``, nothing more."""
    if looks_like_secret(text, settings):
        return f"{keys.split_prefix(text) or ''}…{text[-4:]}"
    if len(text) > 80 or not text.isprintable():
        return repr(text[:16]) + "…"
    return text


def check_metadata(metadata: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A copy of ``metadata``; a reserved or empty name, or a secret, is a
    :class:`KeyUsageError`."""
    result = dict(metadata)
    for name in result:
        if name in RESERVED_METADATA:
            raise KeyUsageError(f"{name!r} is reserved: a {what}'s metadata cannot set it "
                                "(it is the identity's own)")
        if not isinstance(name, str) or not name:
            raise KeyUsageError("a metadata name cannot be empty")
    for text in _strings(result):
        refuse_secret(text, f"in a {what}'s metadata")
    return result


def refuse_secret(text: str, where: str) -> None:
    """A secret pasted where text belongs (metadata, a name) would be stored, shown by every
    command, logged in the audit and sent to backends in ``Envroute-Metadata`` (§3)."""
    if keys.parse(text) is not None:
        raise KeyUsageError(f"{safe_id(text)} is a secret; it cannot be stored {where} "
                            "(if it leaked: envroute keys revoke --secret -)")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a metadata value, names of nested objects included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _strings(name)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def merged(current: Mapping[str, Any], set_meta: Mapping[str, Any] | None,
           unset_meta: Iterable[str]) -> dict[str, Any]:
    """``current`` with ``set_meta`` on top and ``unset_meta`` removed."""
    result = {**current, **(set_meta or {})}
    for name in unset_meta:
        result.pop(name, None)
    return result


def since_days(days: int) -> date:
    """The first UTC day of a ``--days N`` window that ends today."""
    if days < 1:
        raise KeyUsageError("--days must be at least 1")
    return utcnow().date() - timedelta(days=days - 1)


__all__ = ["RESERVED_METADATA", "KeyUsageError", "check_metadata", "looks_like_secret", "merged",
           "refuse_secret", "safe_id", "since_days"]
