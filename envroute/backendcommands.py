"""The ``backends`` commands (§13), shared by ``envroute``, ``flask envroute`` and
``manage.py envroute_backends``: ``add / list / show / update / remove`` stored URL
backends, validated exactly as ``[backends.NAME]`` is. ``backend_from`` routes reach
them; a change reaches every gateway within about a second.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO

from .commandtools import (
    TAKES_EFFECT,
    Managers,
    add_parser,
    duration_argument,
    write_fields,
    write_json,
    write_table,
)
from .stores.base import BackendRecord

_NAME_HELP = "the backend's name (1-64 characters of A-Za-z0-9_-), as metadata names it"


def _pool_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _fields(parser: argparse.ArgumentParser, *, required_url: bool) -> None:
    parser.add_argument("--url", required=required_url, default=None,
                        help="the upstream, http(s)://host[:port][/path]")
    parser.add_argument("--timeout", type=duration_argument, default=None, metavar="DURATION",
                        help="how long to wait for the upstream's answer (default: 30s)")
    parser.add_argument("--connect-timeout", type=duration_argument, default=None,
                        metavar="DURATION",
                        help="how long to wait for a connection (default: 5s, or the "
                             "timeout if shorter)")
    parser.add_argument("--strip-prefix", default=None, metavar="P",
                        help="a path prefix such as /acme removed before forwarding")
    parser.add_argument("--pool-size", type=_pool_size, default=None, metavar="N",
                        help="connections kept per process (default: 0, the proxy's own)")


def add_backend_commands(subparsers: Any,
                         parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    add = add_parser(subparsers, "add", "store a URL backend every gateway serves within "
                     "about 1 s", parents, changes=True)
    add.add_argument("name", metavar="NAME", help=_NAME_HELP)
    _fields(add, required_url=True)

    add_parser(subparsers, "list", "list stored backends (configured ones are in the "
               "config)", parents)

    show = add_parser(subparsers, "show", "show one stored backend", parents)
    show.add_argument("name", metavar="NAME", help=_NAME_HELP)

    update = add_parser(subparsers, "update", "change a stored backend (flags not given keep "
                        "their values); the change " + TAKES_EFFECT, parents, changes=True)
    update.add_argument("name", metavar="NAME", help=_NAME_HELP)
    _fields(update, required_url=False)

    remove = add_parser(subparsers, "remove", "remove a stored backend (requests whose "
                        "metadata still names it get backend_unavailable)", parents,
                        changes=True)
    remove.add_argument("name", metavar="NAME", help=_NAME_HELP)


def run_backend_command(command: str, args: argparse.Namespace, managers: Managers,
                        out: TextIO, err: TextIO) -> int:
    manager = managers.backends
    as_json = getattr(args, "json", False)
    if command in ("add", "update"):
        fields = {"timeout": args.timeout, "connect_timeout": args.connect_timeout,
                  "strip_prefix": args.strip_prefix, "pool_size": args.pool_size}
        if command == "add":
            record = manager.add(args.name, args.url, **fields)
        else:
            record = manager.update(args.name, url=args.url, **fields)
        _show(record, as_json, out)
    elif command == "list":
        records = manager.list()
        if as_json:
            write_json([r.to_dict() for r in records], out)
        else:
            write_table(("NAME", "URL", "TIMEOUT", "STRIP PREFIX"),
                        [(r.name, r.url, f"{r.timeout:g}s", r.strip_prefix or "-")
                         for r in records], out,
                        "(no stored backends: envroute backends add NAME --url URL)")
    elif command == "show":
        _show(manager.get(args.name), as_json, out)
    elif command == "remove":
        _show(manager.remove(args.name), as_json, out)
        if not as_json:
            print(f"Removed {args.name}.", file=err)
    else:  # pragma: no cover - argparse only dispatches known commands
        raise ValueError(command)
    return 0


def _show(record: BackendRecord, as_json: bool, out: TextIO) -> None:
    data = record.to_dict()
    if as_json:
        write_json(data, out)
        return
    write_fields([("name", record.name), ("url", record.url),
                  ("timeout", f"{record.timeout:g}s"),
                  ("connect_timeout", f"{record.connect_timeout:g}s"),
                  ("strip_prefix", record.strip_prefix or "-"),
                  ("pool_size", record.pool_size), ("created_at", data["created_at"] or "-"),
                  ("updated_at", data["updated_at"] or "-")], out)
