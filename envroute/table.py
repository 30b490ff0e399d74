"""Reading one table of the configuration: typed values, and unknown keys refused.

:class:`Table` is how :mod:`envroute.sections` and :mod:`envroute.rules` read the config:
each value is popped with its expected type, and whatever is left when the table is
finished is an unknown key, so a typo (``timout``) stops start-up instead of being
ignored. Every error is a :class:`~envroute.errors.ConfigError` naming the source, the
dotted key and the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"10m"``, ``"24h"``, ``"30d"`` or a number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s', '10m' or '30d'")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration such as '5s', '10m' or '30d'")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration such as '5s', '10m' or '30d'")


def kind(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


class Table:
    """One table of the config, read key by key; whatever is left at the end is unknown."""

    def __init__(self, data: object, path: str, source: str) -> None:
        self.path = path
        self.source = source
        if not isinstance(data, Mapping):
            raise self.error("expected a table", key="")
        self.data: dict[str, Any] = dict(data)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, reason: str, *, key: str | None = None) -> ConfigError:
        return ConfigError(reason, key=self.path if key == "" else self.key(key or ""),
                           source=self.source)

    def has(self, name: str) -> bool:
        return name in self.data

    def pop(self, name: str, default: Any = None) -> Any:
        return self.data.pop(name, default)

    def string(self, name: str, default: str = "", *, required: bool = False) -> str:
        if name not in self.data:
            if required:
                raise self.error("is required", key=name)
            return default
        value = self.data.pop(name)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {kind(value)}", key=name)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        if name not in self.data:
            return default
        value = self.data.pop(name)
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {kind(value)}", key=name)
        return value

    def duration(self, name: str, default: float, *, positive: bool = False) -> float:
        """A duration; ``positive``: longer than 0 (a timeout of 0 would fail every call)."""
        if name not in self.data:
            return default
        value = self.data.pop(name)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(str(exc), key=name) from None
        if positive and seconds <= 0:
            raise self.error("must be longer than 0s", key=name)
        return seconds

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        if name not in self.data:
            return default
        value = self.data.pop(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"expected a whole number >= {minimum}, got {value!r}", key=name)
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.data.pop(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error("expected a list of strings", key=name)
        return tuple(value)

    def section(self, name: str) -> Table:
        return Table(self.data.pop(name, {}), self.key(name), self.source)

    def finish(self) -> None:
        if self.data:
            unknown = sorted(self.data)[0]
            raise self.error("unknown key", key=unknown)
