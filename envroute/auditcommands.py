"""``envroute audit`` (§16): who changed which key, customer or backend, and how.

Newest first. ``--customer`` includes the records of that customer's keys; ``--since``
takes a duration back from now (``7d``) or an ISO date or time (``2026-01-31``). The log
never holds a secret (a rolled key shows its new ``last4``), so it is safe to paste.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import TextIO

from .commandtools import Managers, add_json, write_json, write_table
from .config import parse_duration
from .guards import safe_id
from .stores.base import AuditRecord, iso, utcnow


def since_argument(text: str) -> datetime:
    """``7d`` (back from now) or an ISO date/time (UTC unless it says otherwise)."""
    try:
        return utcnow() - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a duration such as 7d nor "
                                         "a date such as 2026-01-31") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", metavar="ID", default=None, help="only this key's records")
    parser.add_argument("--customer", metavar="ID", default=None,
                        help="only this customer's records, its keys' included")
    parser.add_argument("--backend", metavar="NAME", default=None,
                        help="only this stored backend's records")
    parser.add_argument("--since", type=since_argument, default=None, metavar="D",
                        help="only records since then: a duration back (7d) or a date")
    add_json(parser)


def run_audit_command(args: argparse.Namespace, managers: Managers, out: TextIO,
                      err: TextIO) -> int:
    records = managers.store.list_audit(
        key_id=args.key, customer_id=args.customer, backend=args.backend, since=args.since)
    if args.json:
        write_json([r.to_dict() for r in records], out)
        return 0
    settings = managers.keys.settings
    write_table(("AT", "ACTOR", "ACTION", "TARGET", "CHANGES"),
                [(iso(r.at) or "-", r.actor, r.action, safe_id(r.target, settings),
                  _changes(r)) for r in records], out, "(no changes recorded)")
    return 0


def _changes(record: AuditRecord) -> str:
    """``name: before -> after`` for each field, compact."""
    parts = []
    for name, change in sorted(record.changes.items()):
        if isinstance(change, dict) and set(change) == {"before", "after"}:
            before, after = (json.dumps(change[k], sort_keys=True) for k in ("before", "after"))
            if record.action.endswith((".created", ".added")):
                parts.append(f"{name}={after}")
            elif record.action.endswith(".removed"):
                parts.append(f"{name}={before}")
            else:
                parts.append(f"{name}: {before} -> {after}")
        else:
            parts.append(f"{name}={json.dumps(change, sort_keys=True)}")
    return "; ".join(parts) or "-"
