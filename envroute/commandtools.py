"""What every command group shares: argument types, ``--actor``/``--json``, and output.

The ``keys``, ``customers``, ``backends`` and ``audit`` commands are built once (argparse)
and run by three front ends (``envroute``, ``flask envroute``, ``manage.py``), so their
flags and output are the same everywhere. :class:`Managers` is what a front end hands
over: the three managers, already acting for the command's ``--actor``.

Revocation timing is said here once (:data:`TAKES_EFFECT`), so the help text, the
README and the admin say the same thing and it matches what the stores do (§11).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .accesslog import escape_char
from .config import parse_duration

if TYPE_CHECKING:
    from .customers import CustomerManager
    from .lifecycle import KeyManager
    from .settings import Settings
    from .stored_backends import BackendManager
    from .stores.base import Change, KeyStore

#: How soon a change (a revocation) reaches other processes, per store (§11).
TAKES_EFFECT = ("takes effect at once in this process and within about 1 s everywhere "
                "else: every worker of every gateway on PostgreSQL (and django:// on "
                "PostgreSQL), every process on the machine on SQLite and other django:// "
                "databases; [auth] cache_ttl is only the fallback when a change "
                "notification is lost")
#: What could split or forge a line of output: C0 and C1 controls, the Unicode line
#: separators. A backslash is left alone (JSON in a cell keeps its own escapes).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
JSON_HELP = "print one JSON document on stdout"
ACTOR_HELP = "who makes this change, for the audit log (default: the OS user)"


@dataclass(frozen=True)
class Managers:
    """The managers one command runs against, acting for one actor."""

    keys: KeyManager
    customers: CustomerManager
    backends: BackendManager

    @property
    def store(self) -> KeyStore:
        return self.keys.store

    @classmethod
    def build(cls, store: KeyStore, settings: Settings, *,
              notify: Callable[[Change], None] | None = None,
              actor: str | None = None) -> Managers:
        from .customers import CustomerManager
        from .lifecycle import KeyManager
        from .stored_backends import BackendManager

        return cls(KeyManager(store, settings, notify=notify, actor=actor),
                   CustomerManager(store, settings, notify=notify, actor=actor),
                   BackendManager(store, settings, notify=notify, actor=actor))

    @classmethod
    def of_router(cls, router: Any, actor: str | None = None) -> Managers:
        """The managers ``EnvRouter`` exposes (``router.keys`` …), for ``actor``; built
        on the router's store and change handler for a router that has none."""
        keys = getattr(router, "keys", None)
        customers = getattr(router, "customers", None)
        backends = getattr(router, "stored_backends", None)
        if keys is None or customers is None or backends is None:
            notify = getattr(router, "on_change", None) or getattr(router, "_on_change", None)
            return cls.build(router.store, router.settings, notify=notify, actor=actor)
        return cls(keys.as_actor(actor), customers.as_actor(actor), backends.as_actor(actor))


def duration_argument(text: str) -> float:
    """argparse ``type=`` for a duration (``30d``, ``12h``): a bad value exits 2."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(text: str) -> float:
    """A duration longer than zero (``--within``): ``0s`` would list nothing."""
    seconds = duration_argument(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not longer than 0s")
    return seconds


def expiry_duration(text: str) -> float:
    """``--expires-in``: longer than zero, since ``0s`` would mean "never" by accident."""
    try:
        return positive_duration(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (leave the flag out for no expiry)"
                                         ) from None


def meta_argument(text: str) -> tuple[str, str]:
    """``K=V`` for ``--meta``; the value is a string (JSON lives in the admin)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        # Never echoed: a secret pasted here by mistake would be printed in full.
        raise argparse.ArgumentTypeError("expected KEY=VALUE (no '=' or no KEY in the value "
                                         "given)")
    return name, value


def days_argument(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days >= 1, got {text!r}")
    return days


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", metavar="NAME", default=None, help=ACTOR_HELP)


def add_parser(subparsers: Any, name: str, help: str,
               parents: Sequence[argparse.ArgumentParser], *, changes: bool = False,
               json_output: bool = True) -> argparse.ArgumentParser:
    """One sub-command, with ``--json`` and (when it changes something) ``--actor``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=help[:1].upper() + help[1:] + ".",
        parents=list(parents))
    if json_output:
        add_json(parser)
    if changes:
        add_actor(parser)
    return parser


def write_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def escape(text: str) -> str:
    """``text`` with each control character as ``\\xNN`` (``\\uNNNN`` past 0xff)."""
    return _CONTROL.sub(escape_char, text)


def write_fields(rows: Sequence[tuple[str, object]], out: TextIO) -> None:
    """``name  value`` lines, aligned; control characters escaped (see :func:`write_table`)."""
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        out.write(f"{name:<{width}}{escape(str(value))}\n")


def write_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO,
                empty: str) -> None:
    """Aligned columns; ``empty`` (a hint) when there are no rows.

    Every cell has its control characters escaped (``\\x0a`` for LF), as the access log
    escapes its fields: names, metadata and ``--actor`` are whatever someone typed, and a newline
    in one would split a row, or forge one (an ``audit`` record that never happened)."""
    table = [tuple(header), *[tuple(escape(str(cell)) for cell in r) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                  .rstrip() + "\n")
    if not rows:
        out.write(empty + "\n")


def metadata_text(metadata: Any) -> str:
    return json.dumps(dict(metadata), sort_keys=True)


def usage_lines(days: Sequence[Any], out: TextIO, as_json: bool) -> None:
    """``keys usage`` / ``customers usage``: one row per day with traffic."""
    if as_json:
        write_json([d.to_dict() for d in days], out)
        return
    rows = [(d.date.isoformat(), str(d.requests), str(d.errors)) for d in days]
    if rows:
        rows.append(("total", str(sum(d.requests for d in days)),
                     str(sum(d.errors for d in days))))
    write_table(("DATE", "REQUESTS", "ERRORS"), rows, out,
                "(no traffic in that period)")
