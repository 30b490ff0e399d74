"""Stored backends (§13): URL backends kept in the store, served beside configured ones.

A customer moved to dedicated infrastructure needs a backend the config file did not
know; ``envroute backends add acme-dedicated --url …`` adds it to every gateway within a
second, with no redeploy, and ``backend_from`` routes reach it.

Validation is the config's own: the fields are run through
:func:`envroute.config.parse_settings` as a one-backend ``[backends.NAME]`` table, so a
stored backend can never hold a value a configured one would refuse (the risk: a gateway
that builds a proxy per stored backend must not meet a URL it cannot use). A name the
config defines cannot be stored, so a stored backend never shadows a configured one.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import replace
from typing import Any

from .audit import Managed, diff
from .config import parse_settings
from .errors import AlreadyExists, BackendNotFound, ConfigError
from .guards import KeyUsageError, looks_like_secret, safe_id
from .settings import APP_BACKEND
from .stores.base import BackendRecord, Change, utcnow_seconds

BACKEND_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FIELDS = ("url", "timeout", "connect_timeout", "strip_prefix", "pool_size")


def _audited(record: BackendRecord) -> dict[str, Any]:
    data = record.to_dict()
    for name in ("name", "created_at", "updated_at"):
        data.pop(name)
    return data


class BackendManager(Managed):
    """Add, read, change and remove stored backends; see the module docstring."""

    def _name(self, name: str) -> str:
        if not BACKEND_NAME.match(name) or looks_like_secret(name, self.settings):
            raise BackendNotFound(f"no stored backend {safe_id(name, self.settings)}")
        return name

    def _changed(self, action: str, record: BackendRecord, changes: dict[str, Any]) -> None:
        self.recorder.changed(Change("backend", record.name), action, record.name, changes)

    def validate(self, record: BackendRecord, *, given: frozenset[str] = frozenset(_FIELDS)
                 ) -> BackendRecord:
        """``record`` as the config would read it as ``[backends.NAME]``; one line if not.

        ``given`` names the fields the user set; the others take the config's defaults
        (``connect_timeout`` follows ``timeout`` as it does in a config file).
        """
        if looks_like_secret(record.name, self.settings):
            # A secret fits the name alphabet: stored as a name it would be shown everywhere.
            raise KeyUsageError(f"{safe_id(record.name, self.settings)} is a secret, not a "
                                "backend name")
        if not BACKEND_NAME.match(record.name):
            raise KeyUsageError(f"{safe_id(record.name, self.settings)!r} is not a backend "
                                "name: 1-64 characters of A-Za-z0-9_-")
        if record.name == APP_BACKEND and record.name not in self.settings.backends:
            raise KeyUsageError(f"backend {APP_BACKEND!r} is the name of the app envroute "
                                "wraps (EnvRouter(app, …), --app); pick another name")
        if record.name in self.settings.backends:
            raise KeyUsageError(f"backend {record.name!r} is defined in the config "
                                f"({self.settings.source}); pick another name")
        table: dict[str, Any] = {"url": record.url}
        for field in given - {"url"}:
            table[field] = getattr(record, field)
        try:
            parsed = parse_settings({"secret": self.settings.secret,
                                     "backends": {record.name: table}},
                                    source=f"backend {record.name}")
        except ConfigError as exc:
            raise KeyUsageError(f"backend {record.name}: {exc.key.rpartition('.')[2]}: "
                                f"{exc.reason}") from None
        backend = parsed.backends[record.name]
        return replace(record, url=backend.url, timeout=backend.timeout,
                       connect_timeout=backend.connect_timeout,
                       strip_prefix=backend.strip_prefix, pool_size=backend.pool_size)

    def get(self, name: str) -> BackendRecord:
        return self.store.get_backend(self._name(name))

    def list(self) -> builtins.list[BackendRecord]:
        return self.store.list_backends()

    def add(self, name: str, url: str, *, timeout: float | None = None,
            connect_timeout: float | None = None, strip_prefix: str | None = None,
            pool_size: int | None = None) -> BackendRecord:
        values: dict[str, Any] = {"timeout": timeout, "connect_timeout": connect_timeout,
                                  "strip_prefix": strip_prefix, "pool_size": pool_size}
        given = frozenset({"url"} | {k for k, v in values.items() if v is not None})
        now = utcnow_seconds()
        record = self.validate(BackendRecord(
            name=name, url=url, created_at=now, updated_at=now,
            **{k: v for k, v in values.items() if v is not None}), given=given)
        self.recorder.prepare()
        try:
            stored = self.store.add_backend(record)
        except AlreadyExists:
            raise AlreadyExists(f"a stored backend named {name!r} exists already "
                                "(envroute backends update to change it)") from None
        self._changed("backend.added", stored, diff({}, _audited(stored)))
        return stored

    def update(self, name: str, *, url: str | None = None, timeout: float | None = None,
               connect_timeout: float | None = None, strip_prefix: str | None = None,
               pool_size: int | None = None) -> BackendRecord:
        """Change the fields given; the others keep their values."""
        before = self.get(name)
        values: dict[str, Any] = {"url": url, "timeout": timeout,
                                  "connect_timeout": connect_timeout,
                                  "strip_prefix": strip_prefix, "pool_size": pool_size}
        changed = {k: v for k, v in values.items() if v is not None}
        if not changed:
            return before
        record = self.validate(replace(before, updated_at=utcnow_seconds(),
                                       **changed))
        self.recorder.prepare()
        after = self.store.update_backend(record)
        self._changed("backend.updated", after, diff(_audited(before), _audited(after)))
        return after

    def remove(self, name: str) -> BackendRecord:
        """Never refused: requests whose metadata still names it get
        ``backend_unavailable`` (never another backend)."""
        self.recorder.prepare()
        removed = self.store.remove_backend(self._name(name))
        self._changed("backend.removed", removed, diff(_audited(removed), {}))
        return removed
