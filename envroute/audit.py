"""The audit log and events: what happens after every change to a key, customer or backend.

Each manager (:mod:`envroute.lifecycle`, :mod:`envroute.customers`,
:mod:`envroute.stored_backends`) stores its change first, then hands it to a
:class:`Recorder`, which, in this order:

1. appends an :class:`~envroute.stores.base.AuditRecord` to the store (``at``, ``actor``,
   ``action``, ``target``, ``changes`` before/after, ``customer_id``);
2. calls ``notify(Change)`` so the process that made the change honours it at once;
3. calls every ``[events] hooks`` entry, then every process-wide listener (Django's
   ``envroute_event`` signal is one), with an :class:`Event`.

The risk this ordering answers: a hook (a webhook sender, a pager) that raises or hangs
must never undo or hide a change that is already stored, so every hook runs in its own
``try`` and a failure is logged on ``envroute.events``, never raised. Secrets never
reach this module: managers pass ``last4`` at most.
"""

from __future__ import annotations

import copy
import getpass
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from .errors import ConfigError
from .settings import Settings, frozen_map
from .stores.base import AuditRecord, Change, KeyStore, iso, utcnow

logger = logging.getLogger("envroute.events")

#: The actions of §16, each the audit record's ``action`` and the event's name.
ACTIONS = frozenset({
    "key.created", "key.updated", "key.rolled", "key.revoked", "key.disabled",
    "key.enabled", "customer.created", "customer.updated", "customer.disabled",
    "customer.enabled", "backend.added", "backend.updated", "backend.removed",
})

Hook = Callable[["Event"], object]
_listeners: list[Hook] = []
_warned: set[str] = set()


def _warn_once(store: str) -> None:
    if store not in _warned:
        _warned.add(store)
        logger.warning("%s keeps no audit log (written for envroute 0.1); changes are "
                       "not recorded", store)


def default_actor() -> str:
    """Who made a change when nobody said: the OS user (``--actor``'s default)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no user database entry (containers)
        return os.environ.get("USER") or "unknown"


@dataclass(frozen=True)
class Event:
    """One change, as hooks receive it: the audit record's fields as attributes."""

    action: str
    target: str
    actor: str
    at: datetime
    changes: Mapping[str, Any] = field(default_factory=frozen_map)
    customer_id: str | None = None

    @classmethod
    def from_record(cls, record: AuditRecord) -> Event:
        return cls(action=record.action, target=record.target, actor=record.actor,
                   at=record.at, changes=record.changes, customer_id=record.customer_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the same shape as ``envroute audit --json`` (a webhook's body)."""
        return {"at": iso(self.at), "actor": self.actor, "action": self.action,
                "target": self.target, "changes": dict(self.changes),
                "customer_id": self.customer_id}


def add_listener(listener: Hook) -> None:
    """Call ``listener(event)`` after every change made in this process, besides the
    configured hooks (``django_envroute`` sends its signal this way). Idempotent."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Hook) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: {"before": …, "after": …}}`` for each field whose value changed."""
    return {name: {"before": before.get(name), "after": after.get(name)}
            for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name)}


def load_hooks(hooks: Iterable[str], source: str = "<config>") -> tuple[Hook, ...]:
    """Import ``[events] hooks``; an import that fails is one :class:`ConfigError`."""
    from .imports import import_object

    loaded = []
    for index, text in enumerate(hooks):
        key = f"events.hooks[{index}]"
        hook = import_object(text, what="hook", key=key, source=source)
        if not callable(hook):
            raise ConfigError(f"{text!r} is not callable", key=key, source=source)
        loaded.append(hook)
    return tuple(loaded)


class Managed:
    """What the three managers share: the store, the settings and the :class:`Recorder`.

    ``notify`` is called with each :class:`Change` once it is stored, so the process that
    made it honours it at once (``EnvRouter`` passes its own invalidation); other
    processes hear it from the store. ``actor`` names who changes things, for the audit
    log (default: the OS user); :meth:`as_actor` gives a copy for another one (the Django
    admin's user, the CLI's ``--actor``).
    """

    def __init__(self, store: KeyStore, settings: Settings, *,
                 notify: Callable[[Change], None] | None = None,
                 actor: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.notify = notify
        self.recorder = Recorder(store, settings, notify=notify, actor=actor)

    @property
    def actor(self) -> str:
        return self.recorder.actor

    def as_actor(self, actor: str | None) -> Self:
        """The same manager acting for ``actor`` (None or empty: this one's actor)."""
        if not actor:
            return self
        twin = copy.copy(self)
        twin.recorder = copy.copy(self.recorder)
        twin.recorder.actor = checked_actor(actor, self.settings)
        return twin


def checked_actor(actor: str, settings: Settings) -> str:
    """``actor`` as the audit log may keep it. A secret given as ``--actor`` (pasted in
    the wrong place) would be stored in every record and shown by every ``audit``, so it
    is refused, and shown as ``prefix…last4``, before anything changes (§3)."""
    from .guards import KeyUsageError, looks_like_secret, safe_id

    if looks_like_secret(actor, settings):
        raise KeyUsageError(f"{safe_id(actor, settings)} is a secret, not an actor name "
                            "(if it leaked: envroute keys revoke --secret -)")
    return actor


class Recorder:
    """Audit, notify and hooks for one manager; see the module docstring for the order."""

    def __init__(self, store: KeyStore, settings: Settings, *,
                 notify: Callable[[Change], None] | None = None,
                 actor: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.notify = notify
        self.actor = checked_actor(actor, settings) if actor else default_actor()
        self._hooks: tuple[Hook, ...] | None = None

    def hooks(self) -> tuple[Hook, ...]:
        """The configured hooks, imported on the first change (not at start-up, so a
        read-only command never imports the operator's code)."""
        if self._hooks is None:
            self._hooks = load_hooks(self.settings.events.hooks, self.settings.source)
        return self._hooks

    def prepare(self) -> None:
        """Called before a change is made: a hook that cannot be imported stops the
        command with one line while nothing has changed yet."""
        self.hooks()

    def changed(self, change: Change, action: str, target: str, changes: Mapping[str, Any],
                *, customer_id: str | None = None) -> AuditRecord:
        """Record a change already stored; returns its audit record."""
        hooks = self.hooks()
        record = AuditRecord(at=utcnow(), actor=self.actor, action=action, target=target,
                             changes=frozen_map(changes), customer_id=customer_id)
        try:
            self.store.append_audit(record)
        except NotImplementedError:  # a store written for 0.1: no audit log to keep
            _warn_once(type(self.store).__name__)
        if self.notify is not None:
            self.notify(change)
        event = Event.from_record(record)
        for hook in (*hooks, *_listeners):
            try:
                hook(event)
            except Exception:  # a hook never undoes a stored change
                logger.warning("events hook %s:%s failed on %s %s (the change is stored)",
                               getattr(hook, "__module__", "?"),
                               getattr(hook, "__qualname__", hook), action, target,
                               exc_info=True)
        return record
