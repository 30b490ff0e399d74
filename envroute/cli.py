"""The ``envroute`` command line (argparse): keys, customers, backends, audit, serve,
check, explain, demo.

Exit status is the contract's: 0 done, 1 operational error (a broken config, a store that
can't be reached, an unknown id, an import that fails), 2 usage error (argparse's own). A
failure is one line on stderr, ``envroute: error: …``, never a traceback; libraries that
log (psycopg's pool) are kept quiet, and a failing ``[events]`` hook is one warning line.
The risk named here: no secret ever reaches the output, not even one typed where an id
belongs (the managers mask it before any error can repeat it).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .errors import EnvrouteError

#: The groups of management commands: name -> (help, module, adder, runner).
GROUPS: dict[str, tuple[str, str, str, str]] = {
    "keys": ("create, list, show, update, disable, enable, revoke and roll keys; usage and "
             "expiry", "envroute.keycommands", "add_key_commands", "run_key_command"),
    "customers": ("create, list, show, update, disable and enable customers; usage",
                  "envroute.customercommands", "add_customer_commands",
                  "run_customer_command"),
    "backends": ("add, list, show, update and remove stored URL backends",
                 "envroute.backendcommands", "add_backend_commands", "run_backend_command"),
}
AUDIT_HELP = "who changed which key, customer or backend, newest first"


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as the contract's one line on stderr (exit 2): the
    cause, and where the usage is, instead of the usage block and then the cause."""

    def error(self, message: str) -> NoReturn:
        message = one_line(message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: What may be a secret in argparse's own messages (``invalid choice: 'sk_live_…'``, a
#: secret given as a command): a prefix, then a body as long as a secret's; never a key id.
_SECRET_LIKE = re.compile(r"(?<![A-Za-z0-9_])(?!key_)([a-z][a-z0-9]*(?:_[a-z0-9]+)*_)"
                          r"[0-9A-Za-z]{26,}([0-9A-Za-z]{4})(?![0-9A-Za-z])")


def _masked(match: re.Match[str]) -> str:
    return f"{match.group(1)}…{match.group(2)}"


def one_line(text: str) -> str:
    """``text`` as a failure's one line: whitespace (newlines) collapsed, and anything
    that may be a secret shown as ``prefix…last4``. Every front end's error line goes
    through here, so a secret pasted where a URL, a path or an import string belongs
    (``--url``, ``--config``, ``--app``) is not repeated by the message that refuses it."""
    return _SECRET_LIKE.sub(_masked, " ".join(text.split()))


def common_parser(*, store: bool = True) -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="the TOML config (default: $ENVROUTE_CONFIG, then ./envroute.toml)")
    if store:
        common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                            help="the key store URL, overriding [store] url")
    return common


def add_group_arguments(parser: argparse.ArgumentParser, group: str,
                        common: argparse.ArgumentParser) -> None:
    """The arguments of one management group (``keys``, ``customers``, ``backends``,
    ``audit``) on ``parser``: shared by ``envroute``, ``flask envroute`` and ``manage.py``
    so every front end takes the same flags."""
    import importlib

    if group == "audit":
        from .auditcommands import add_audit_arguments

        add_audit_arguments(parser)
        return
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    getattr(importlib.import_module(GROUPS[group][1]), GROUPS[group][2])(
        actions, parents=[common])


def build_parser() -> argparse.ArgumentParser:
    common = common_parser()
    parser = Parser(
        prog="envroute", parents=[common],
        description="Stripe-style test/live API keys and routing for WSGI services.")
    parser.add_argument("--version", action="version", version=f"envroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, (help_text, _, _, _) in GROUPS.items():
        group = commands.add_parser(name, help=help_text, description=help_text + ".",
                                    parents=[common])
        add_group_arguments(group, name, common)
    audit = commands.add_parser("audit", parents=[common], help=AUDIT_HELP,
                                description=AUDIT_HELP + ".")
    add_group_arguments(audit, "audit", common)

    app_help = ("wrap this WSGI app as the backend 'app' (package.module:attr, or "
                "package.module:factory() to call a factory)")
    serve = commands.add_parser("serve", help="run the gateway on a development server",
                                parents=[common])
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on")
    serve.add_argument("--app", metavar="IMPORT", help=app_help)

    check = commands.add_parser("check", parents=[common], help="validate the config, "
                                "open the store, reach every backend, and lint")
    check.add_argument("--app", metavar="IMPORT", help=app_help)
    check.add_argument("--strict", action="store_true",
                       help="exit 1 when a lint finds something (default: warnings only)")
    check.add_argument("--json", action="store_true", help="print one JSON document")

    explain = commands.add_parser("explain", parents=[common],
                                  help="which route and backend a request would take, and "
                                       "where each metadata value came from")
    explain.add_argument("key", metavar="KEY", help="the API key (or JWT) to try")
    explain.add_argument("method", metavar="METHOD", type=_method,
                         help="the HTTP method, such as GET")
    explain.add_argument("path", metavar="PATH", type=_path,
                         help="the path, such as /v1/charges")
    explain.add_argument("--app", metavar="IMPORT", help=app_help)
    explain.add_argument("--json", action="store_true", help="print one JSON document")

    demo = commands.add_parser("demo", help="a gateway with mock backends and two demo keys")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=_port, default=8080,
                      help="port to listen on (default: 8080)")
    return parser


def _port(text: str) -> int:
    """``--port``: 1-65535 (an int past it overflowed in ``bind``, and the demo wrapped it
    round to another port)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return port


def _method(text: str) -> str:
    """``explain``'s METHOD: an HTTP method (``get`` is read as ``GET``)."""
    from .patterns import METHOD

    if not METHOD.match(text.upper()):
        # Never echoed, here or below: a secret given in the wrong place would be printed.
        raise argparse.ArgumentTypeError("expected an HTTP method such as GET")
    return text.upper()


def _path(text: str) -> str:
    """``explain``'s PATH: what a request line holds, ``/path`` with an optional query."""
    if not text.startswith("/") or any(c.isspace() or ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError("expected a path such as /v1/charges (a leading '/', "
                                         "no spaces)")
    return text


class _OneLine(logging.Formatter):
    """``envroute: warning: message (the exception's one line)``: no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {exc})"
        return f"envroute: {record.levelname.lower()}: {' '.join(text.splitlines())}"


def quiet_logging() -> None:
    """A failing ``[events]`` hook as one warning line; everything else that logs (a pool
    that retries, a change listener that reconnects, a driver that warns) silenced, so a
    command's failure stays one line and its own output says what happened."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.addFilter(lambda record: record.name == "envroute.events")
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [handler]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "demo"):
        quiet_logging()
    try:
        return _run(args)
    except EnvrouteError as exc:
        print(f"envroute: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if not _stdout_closed():
            return _failed(exc)
        # The reader went away (`envroute audit | head`): nobody is left to read a
        # message, and the user asked for it. Stop quietly, as a tool stopped by SIGPIPE
        # does, with stdout on /dev/null so Python's flush at exit adds no second error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # one line, whatever the cause
        return _failed(exc)


def _failed(exc: Exception) -> int:
    if os.environ.get("ENVROUTE_DEBUG"):
        raise exc
    print(f"envroute: error: {type(exc).__name__}: {_one_line(exc)} "
          "(ENVROUTE_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 1


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (``poll`` says POLLERR
    for it), rather than a broken pipe met elsewhere."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or stdout is no file
        return False


def _one_line(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(host=args.host, port=args.port)
    if args.command in GROUPS or args.command == "audit":
        return _manage(args)
    from . import clicheck

    if args.command == "serve":
        return clicheck.serve(args)
    if args.command == "check":
        return clicheck.check(args)
    if args.command == "explain":
        return clicheck.explain(args)
    raise AssertionError(args.command)  # pragma: no cover


def _manage(args: argparse.Namespace) -> int:
    from .clicheck import settings_and_store

    settings, store = settings_and_store(args)
    try:
        return run_group(args.command, args, store, settings)
    finally:
        store.close()


def run_group(group: str, args: argparse.Namespace, store: Any, settings: Any, *,
              managers: Any = None, out: Any = None, err: Any = None) -> int:
    """Run one management command (any front end): checks the store's secrets first, so
    a changed ``secret`` is one clear line rather than a store full of unknown keys."""
    import importlib

    from .commandtools import Managers

    if group in ("keys", "customers"):
        from .secrets import verify_store_secrets

        verify_store_secrets(store, settings)  # one clear line on a store of another secret
    if managers is None:
        managers = Managers.build(store, settings, actor=getattr(args, "actor", None))
    out, err = out or sys.stdout, err or sys.stderr
    if group == "audit":
        from .auditcommands import run_audit_command

        return run_audit_command(args, managers, out, err)
    runner = getattr(importlib.import_module(GROUPS[group][1]), GROUPS[group][3])
    if group == "keys":
        return int(runner(args.action, args, managers, out, err, sys.stdin))
    return int(runner(args.action, args, managers, out, err))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
