"""The ``customers`` commands (§12), shared by ``envroute``, ``flask envroute`` and
``manage.py envroute_customers``: ``create / list / show / update / disable / enable /
usage``. Moving a customer is ``customers update acme --meta backend=acme-dedicated``:
every gateway honours it within about a second, with no new keys.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO

from .commandtools import (
    TAKES_EFFECT,
    Managers,
    add_parser,
    days_argument,
    meta_argument,
    metadata_text,
    usage_lines,
    write_fields,
    write_json,
    write_table,
)
from .stores.base import CustomerRecord, KeyRecord

_ID_HELP = "the customer's id (1-64 characters of A-Za-z0-9_.:-)"


def add_customer_commands(subparsers: Any,
                          parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    create = add_parser(subparsers, "create", "add a customer (an existing id: exit 1)",
                        parents, changes=True)
    create.add_argument("id", metavar="ID", help=_ID_HELP + ", typically your account id")
    create.add_argument("--name", default="", help="a label for people")
    _meta(create, "metadata every key of the customer inherits (repeatable)")

    add_parser(subparsers, "list", "list customers", parents)

    show = add_parser(subparsers, "show", "show a customer and its keys", parents)
    show.add_argument("id", metavar="ID", help=_ID_HELP)

    update = add_parser(subparsers, "update", "change a customer's name or metadata; the "
                        "change " + TAKES_EFFECT, parents, changes=True)
    update.add_argument("id", metavar="ID", help=_ID_HELP)
    update.add_argument("--name", default=None, help="a new label for people")
    _meta(update, "set a metadata value, such as backend=acme-dedicated (repeatable)")
    update.add_argument("--unset-meta", action="append", default=[], metavar="K",
                        help="remove a metadata value (repeatable)")

    for name, what in (("disable", "refuse every key of the customer with disabled_key "
                                   "(nothing is revoked); "),
                       ("enable", "accept a disabled customer's keys again; ")):
        toggle = add_parser(subparsers, name, what + "the change " + TAKES_EFFECT, parents,
                            changes=True)
        toggle.add_argument("id", metavar="ID", help=_ID_HELP)

    usage = add_parser(subparsers, "usage", "requests and errors per UTC day, all the "
                       "customer's keys together", parents)
    usage.add_argument("id", metavar="ID", help=_ID_HELP)
    usage.add_argument("--days", type=days_argument, default=30, metavar="N",
                       help="how many days back, today included (default: 30)")


def _meta(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--meta", action="append", type=meta_argument, default=[],
                        metavar="K=V", help=help)


def run_customer_command(command: str, args: argparse.Namespace, managers: Managers,
                         out: TextIO, err: TextIO) -> int:
    manager = managers.customers
    as_json = getattr(args, "json", False)
    if command == "create":
        _show(manager.create(args.id, name=args.name, metadata=dict(args.meta)), None,
              as_json, out)
    elif command == "list":
        records = manager.list()
        if as_json:
            write_json([r.to_dict() for r in records], out)
        else:
            write_table(("ID", "NAME", "STATUS", "METADATA"),
                        [(r.id, r.name or "-", r.status, metadata_text(r.metadata))
                         for r in records], out,
                        "(no customers yet: envroute customers create ID)")
    elif command == "show":
        record = manager.get(args.id)
        _show(record, manager.keys(record.id), as_json, out)
    elif command == "update":
        _show(manager.update(args.id, name=args.name, set_meta=dict(args.meta),
                             unset_meta=args.unset_meta), None, as_json, out)
    elif command in ("disable", "enable"):
        _show(getattr(manager, command)(args.id), None, as_json, out)
    elif command == "usage":
        usage_lines(manager.usage(args.id, days=args.days), out, as_json)
    else:  # pragma: no cover - argparse only dispatches known commands
        raise ValueError(command)
    return 0


def _key_summary(key: KeyRecord) -> dict[str, Any]:
    return {"id": key.id, "environment": key.environment, "status": key.status(),
            "last4": key.last4, "name": key.name}


def _show(record: CustomerRecord, keys: list[KeyRecord] | None, as_json: bool,
          out: TextIO) -> None:
    data = record.to_dict()
    if as_json:
        if keys is not None:
            data["keys"] = [_key_summary(k) for k in keys]
        write_json(data, out)
        return
    write_fields([("id", record.id), ("name", record.name or "-"),
                  ("metadata", metadata_text(record.metadata)), ("status", record.status),
                  ("created_at", data["created_at"]),
                  ("disabled_at", data["disabled_at"] or "-")], out)
    if keys is not None:
        out.write("\n")
        write_table(("KEY", "ENVIRONMENT", "STATUS", "SECRET", "NAME"),
                    [(k.id, k.environment, k.status(), k.display, k.name or "-")
                     for k in keys], out,
                    f"(no keys yet: envroute keys create -e sandbox --customer {record.id})")
