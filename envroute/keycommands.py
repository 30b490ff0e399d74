"""The ``keys`` commands, shared by ``envroute keys``, ``flask envroute keys`` and
``manage.py envroute_keys`` so all three take the same flags and print the same output.

:func:`add_key_commands` adds ``create / list / show / revoke / roll`` to an argparse
sub-parser set; :func:`run_key_command` runs one against a :class:`KeyManager`. A secret
is printed exactly once, by ``create`` and ``roll``; everything else shows ``prefix…last4``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, TextIO

from .config import parse_duration
from .lifecycle import IssuedKey, KeyManager
from .stores.base import KeyRecord

ONCE_WARNING = "Store this key now: it is shown only once and cannot be recovered."


def duration_argument(text: str) -> float:
    """argparse ``type=`` for ``--expires-in 30d``: a bad value is a usage error (exit 2)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def meta_argument(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def add_key_commands(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register the five key commands on ``subparsers`` (from ``add_subparsers``)."""
    common = {"parents": list(parents)}
    create = subparsers.add_parser("create", help="make a key and print its secret once",
                                   **common)
    create.add_argument("--environment", "-e", required=True,
                        help="the key's environment, such as sandbox or production")
    create.add_argument("--meta", action="append", type=meta_argument, default=[],
                        metavar="K=V", help="metadata to route by (repeatable)")
    create.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                        help="restrict the key to a scope defined in [scopes] (repeatable)")
    create.add_argument("--name", default="", help="a label for people")
    create.add_argument("--expires-in", type=duration_argument, metavar="DURATION",
                        help="expire after this long, such as 30d or 12h")
    create.add_argument("--json", action="store_true", help="print one JSON document")

    listing = subparsers.add_parser("list", help="list keys (never their secrets)", **common)
    listing.add_argument("--json", action="store_true", help="print one JSON document")

    show = subparsers.add_parser("show", help="show one key", **common)
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print one JSON document")

    revoke = subparsers.add_parser("revoke", help="revoke a key at once", **common)
    revoke.add_argument("id", metavar="ID")
    revoke.add_argument("--json", action="store_true", help="print one JSON document")

    roll = subparsers.add_parser("roll", help="give a key a new secret", **common)
    roll.add_argument("id", metavar="ID")
    roll.add_argument("--expires-in", type=duration_argument, default=0.0, metavar="DURATION",
                      help="keep the old secret working this long (default: retire it now)")
    roll.add_argument("--json", action="store_true", help="print one JSON document")


def run_key_command(command: str, args: argparse.Namespace, manager: KeyManager,
                    out: TextIO, err: TextIO) -> int:
    """Run ``command``; errors propagate as :class:`EnvrouteError` for the caller to report."""
    as_json = getattr(args, "json", False)
    if command == "create":
        issued = manager.create(args.environment, metadata=dict(args.meta), scopes=args.scope,
                                name=args.name, expires_in=args.expires_in)
        _issued(issued, as_json, out, err)
    elif command == "list":
        records = manager.list()
        if as_json:
            _json([r.to_dict() for r in records], out)
        else:
            _table(records, out)
    elif command == "show":
        _record(manager.get(args.id), as_json, out)
    elif command == "revoke":
        _record(manager.revoke(args.id), as_json, out)
    elif command == "roll":
        issued = manager.roll(args.id, expires_in=args.expires_in)
        _issued(issued, as_json, out, err)
        if not as_json:
            print("The previous secret " + ("stops working now." if not args.expires_in
                  else f"keeps working for {args.expires_in:g} seconds."), file=err)
    else:  # pragma: no cover - argparse only dispatches known commands
        raise ValueError(command)
    return 0


def _json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _issued(issued: IssuedKey, as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        _json(issued.to_dict(), out)
        return
    _fields(issued.record, out, secret=issued.secret)
    print(ONCE_WARNING, file=err)


def _record(record: KeyRecord, as_json: bool, out: TextIO) -> None:
    if as_json:
        _json(record.to_dict(), out)
    else:
        _fields(record, out)


def _fields(record: KeyRecord, out: TextIO, secret: str = "") -> None:
    """One ``name  value`` line per field; the key is the secret only when just issued."""
    data = record.to_dict()
    rows = [("id", record.id), ("key", secret or record.display),
            ("environment", record.environment), ("name", record.name or "-"),
            ("metadata", json.dumps(data["metadata"], sort_keys=True)),
            ("scopes", ", ".join(record.scopes) or "(unrestricted)"),
            ("status", data["status"]), ("created_at", data["created_at"]),
            ("expires_at", data["expires_at"] or "-"), ("revoked_at", data["revoked_at"] or "-"),
            ("last_used_at", data["last_used_at"] or "never")]
    for name, value in rows:
        out.write(f"{name:<13}{value}\n")


def _table(records: list[KeyRecord], out: TextIO) -> None:
    header = ("ID", "ENVIRONMENT", "KEY", "NAME", "SCOPES", "STATUS", "LAST USED")
    rows = [header] + [
        (r.id, r.environment, r.display, r.name or "-", ",".join(r.scopes) or "-",
         r.status(), r.to_dict()["last_used_at"] or "never") for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                  .rstrip() + "\n")
    if not records:
        out.write("(no keys yet: envroute keys create --environment sandbox)\n")
