"""The ``keys`` commands, shared by ``envroute keys``, ``flask envroute keys`` and
``manage.py envroute_keys`` so all three take the same flags and print the same output.

:func:`add_key_commands` adds ``create / list / show / update / disable / enable / revoke
/ roll / usage / expiring`` to an argparse sub-parser set; :func:`run_key_command` runs
one against :class:`~envroute.commandtools.Managers`. A secret is printed exactly once,
by ``create`` and ``roll``; everything else shows ``prefix…last4``. ``revoke --secret -``
reads a leaked secret from standard input (never from the command line, where shell
history and ``ps`` would keep it) and prints only the key id.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .commandtools import (
    TAKES_EFFECT,
    Managers,
    add_parser,
    days_argument,
    duration_argument,
    expiry_duration,
    meta_argument,
    metadata_text,
    positive_duration,
    usage_lines,
    write_fields,
    write_json,
    write_table,
)
from .errors import EnvrouteError
from .lifecycle import STATUSES, IssuedKey
from .stores.base import KeyRecord

# Kept importable from here: front ends and tests of 0.1 used these names.
__all__ = ["ONCE_WARNING", "add_key_commands", "duration_argument", "meta_argument",
           "run_key_command"]

ONCE_WARNING = "Store this key now: it is shown only once and cannot be recovered."
_ID_HELP = "the key's id (key_…); never its secret"


def add_key_commands(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register the key commands on ``subparsers`` (from ``add_subparsers``)."""
    create = add_parser(subparsers, "create", "make a key and print its secret once",
                        parents, changes=True)
    create.add_argument("--environment", "-e", required=True,
                        help="the key's environment, such as sandbox or production")
    create.add_argument("--customer", metavar="ID", default=None,
                        help="the customer the key belongs to (must exist; never changes)")
    _meta(create, "the key's own metadata to route by (repeatable; on top of its "
                  "customer's)")
    create.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                        help="restrict the key to a scope defined in [scopes] (repeatable)")
    create.add_argument("--name", default="", help="a label for people")
    create.add_argument("--expires-in", type=expiry_duration, metavar="DURATION",
                        help="expire after this long, such as 30d or 12h (default: never)")

    listing = add_parser(subparsers, "list", "list keys (never their secrets)", parents)
    listing.add_argument("--environment", "-e", default=None, help="only this environment")
    listing.add_argument("--customer", metavar="ID", default=None,
                         help="only this customer's keys")
    listing.add_argument("--status", choices=STATUSES, default=None, help="only this status")

    show = add_parser(subparsers, "show", "show one key (never its secret)", parents)
    show.add_argument("id", metavar="ID", help=_ID_HELP)

    update = add_parser(subparsers, "update", "change a key's own metadata, name or expiry",
                        parents, changes=True)
    update.add_argument("id", metavar="ID", help=_ID_HELP)
    _meta(update, "set one of the key's own metadata values (repeatable)")
    update.add_argument("--unset-meta", action="append", default=[], metavar="K",
                        help="remove one of the key's own metadata values (repeatable)")
    update.add_argument("--name", default=None, help="a new label for people")
    expiry = update.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=expiry_duration, metavar="DURATION",
                        help="expire this long from now, such as 30d")
    expiry.add_argument("--no-expiry", action="store_true", help="never expire")

    for name, what in (("disable", "refuse the key with disabled_key until enabled; "),
                       ("enable", "accept a disabled key again; ")):
        toggle = add_parser(subparsers, name, what + "the change " + TAKES_EFFECT, parents,
                            changes=True)
        toggle.add_argument("id", metavar="ID", help=_ID_HELP)

    revoke = add_parser(subparsers, "revoke", "revoke a key for good; revocation "
                        + TAKES_EFFECT, parents, changes=True)
    which = revoke.add_mutually_exclusive_group(required=True)  # one or the other: exit 2
    which.add_argument("id", metavar="ID", nargs="?", help=_ID_HELP)
    which.add_argument("--secret", metavar="-", type=_stdin_only,
                        help="'-': read a leaked secret from standard input and revoke its "
                             "key (prints the key id, never the secret)")

    roll = add_parser(subparsers, "roll", "give a key a new secret, printed once", parents,
                      changes=True)
    roll.add_argument("id", metavar="ID", help=_ID_HELP)
    roll.add_argument("--expires-in", type=duration_argument, default=0.0, metavar="DURATION",
                      help="keep the old secret working this long, such as 24h "
                           "(default: retire it now)")

    usage = add_parser(subparsers, "usage", "requests and errors per UTC day", parents)
    usage.add_argument("id", metavar="ID", help=_ID_HELP)
    usage.add_argument("--days", type=days_argument, default=30, metavar="N",
                       help="how many days back, today included (default: 30)")

    expiring = add_parser(subparsers, "expiring", "keys and rolled secrets that expire "
                          "soon (for a daily job that warns customers)", parents)
    expiring.add_argument("--within", type=positive_duration, required=True,
                          metavar="DURATION", help="such as 7d")


def _stdin_only(text: str) -> str:
    """``--secret`` takes only ``-``; anything else is refused without echoing it."""
    if text != "-":
        raise argparse.ArgumentTypeError("the secret is read from standard input only: "
                                         "pass --secret - and pipe it in")
    return text


def _meta(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--meta", action="append", type=meta_argument, default=[],
                        metavar="K=V", help=help)


def run_key_command(command: str, args: argparse.Namespace, managers: Managers,
                    out: TextIO, err: TextIO, stdin: TextIO | None = None) -> int:
    """Run ``command``; errors propagate as :class:`EnvrouteError` for the caller to report."""
    manager = managers.keys
    as_json = getattr(args, "json", False)
    if command == "create":
        issued = manager.create(args.environment, metadata=dict(args.meta), scopes=args.scope,
                                name=args.name, expires_in=args.expires_in,
                                customer_id=args.customer)
        _issued(issued, as_json, out, err)
    elif command == "list":
        records = manager.list(environment=args.environment, customer_id=args.customer,
                               status=args.status)
        if as_json:
            write_json([r.to_dict() for r in records], out)
        else:
            filtered = args.environment or args.customer or args.status
            _table(records, out, "(no keys match)" if filtered else None)
    elif command == "show":
        _record(manager.get(args.id), as_json, out)
    elif command == "update":
        _record(manager.update(args.id, set_meta=dict(args.meta), unset_meta=args.unset_meta,
                               name=args.name, expires_in=args.expires_in,
                               no_expiry=args.no_expiry), as_json, out)
    elif command in ("disable", "enable"):
        _record(getattr(manager, command)(args.id), as_json, out)
    elif command == "revoke":
        _revoke(args, managers, as_json, out, err, stdin)
    elif command == "roll":
        issued = manager.roll(args.id, expires_in=args.expires_in)
        _issued(issued, as_json, out, err)
        if not as_json:
            print("The previous secret " + ("stops working now." if not args.expires_in
                  else f"keeps working for {args.expires_in:g} seconds."), file=err)
    elif command == "usage":
        usage_lines(manager.usage(args.id, days=args.days), out, as_json)
    elif command == "expiring":
        found = manager.expiring(args.within)
        if as_json:
            write_json([e.to_dict() for e in found], out)
        else:
            write_table(("ID", "WHAT", "ENVIRONMENT", "CUSTOMER", "NAME", "EXPIRES AT"),
                        [(e.record.id, e.what, e.record.environment,
                          e.record.customer_id or "-", e.record.name or "-",
                          e.to_dict()["expires_at"]) for e in found], out,
                        "(nothing expires in that time)")
    else:  # pragma: no cover - argparse only dispatches known commands
        raise ValueError(command)
    return 0


def _revoke(args: argparse.Namespace, managers: Managers, as_json: bool, out: TextIO,
            err: TextIO, stdin: TextIO | None) -> None:
    if (args.id is None) == (args.secret is None):
        raise EnvrouteError("give a key id, or --secret - with the secret on standard input")
    if args.secret is not None:
        secret = (stdin or sys.stdin).readline().strip()
        if not secret:
            raise EnvrouteError("--secret -: no secret on standard input")
        record = managers.keys.revoke_secret(secret)
        if as_json:
            write_json(record.to_dict(), out)
        else:
            out.write(record.id + "\n")
            print(f"Revoked {record.id} ({record.display}).", file=err)
        return
    _record(managers.keys.revoke(args.id), as_json, out)


def _issued(issued: IssuedKey, as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        write_json(issued.to_dict(), out)
        return
    _fields(issued.record, out, secret=issued.secret)
    print(ONCE_WARNING, file=err)


def _record(record: KeyRecord, as_json: bool, out: TextIO) -> None:
    if as_json:
        write_json(record.to_dict(), out)
    else:
        _fields(record, out)


def _fields(record: KeyRecord, out: TextIO, secret: str = "") -> None:
    """One ``name  value`` line per field; the key is the secret only when just issued."""
    data = record.to_dict()
    write_fields([
        ("id", record.id), ("key", secret or record.display),
        ("environment", record.environment), ("customer", record.customer_id or "-"),
        ("name", record.name or "-"), ("metadata", metadata_text(record.metadata)),
        ("scopes", ", ".join(record.scopes) or "(unrestricted)"), ("status", data["status"]),
        ("created_at", data["created_at"]), ("expires_at", data["expires_at"] or "-"),
        ("disabled_at", data["disabled_at"] or "-"), ("revoked_at", data["revoked_at"] or "-"),
        ("last_used_at", data["last_used_at"] or "never")], out)


def _table(records: list[KeyRecord], out: TextIO, empty: str | None = None) -> None:
    write_table(
        ("ID", "ENVIRONMENT", "CUSTOMER", "KEY", "NAME", "SCOPES", "STATUS", "LAST USED"),
        [(r.id, r.environment, r.customer_id or "-", r.display, r.name or "-",
          ",".join(r.scopes) or "-", r.status(), r.to_dict()["last_used_at"] or "never")
         for r in records], out,
        empty or "(no keys yet: envroute keys create --environment sandbox)")
