"""The ``envroute`` command line (argparse): keys, serve, check, explain, demo.

Exit status is the contract's: 0 done, 1 operational error (a broken config, a store that
can't be reached, an unknown key id), 2 usage error (argparse's own). A failure is one
line on stderr, ``envroute: error: …``, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import EnvrouteError
from .keycommands import add_key_commands, run_key_command

PLACEHOLDER_APP = "envroute.cli:_placeholder_app"


def _placeholder_app(environ: Any, start_response: Any) -> list[bytes]:
    """Stands in for the wrapped app when ``check`` / ``explain`` run without ``--app``."""
    start_response("501 Not Implemented", [("Content-Type", "text/plain")])
    return [b"the wrapped application is not loaded in this command\n"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="the TOML config (default: $ENVROUTE_CONFIG, then ./envroute.toml)")
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                        help="the key store URL, overriding [store] url")
    parser = argparse.ArgumentParser(
        prog="envroute", parents=[common],
        description="Stripe-style test/live API keys and routing for WSGI services.")
    parser.add_argument("--version", action="version", version=f"envroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = commands.add_parser("keys", help="create, list, show, revoke and roll keys",
                               parents=[common])
    key_commands = keys.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    add_key_commands(key_commands, parents=[common])

    app_help = "wrap this WSGI app as the backend 'app' (package.module:attr)"
    serve = commands.add_parser("serve", help="run the gateway on a development server",
                                parents=[common])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--app", metavar="IMPORT", help=app_help)

    check = commands.add_parser("check", help="validate the config and reach every backend",
                                parents=[common])
    check.add_argument("--app", metavar="IMPORT", help=app_help)
    check.add_argument("--json", action="store_true", help="print one JSON document")

    explain = commands.add_parser("explain", parents=[common],
                                  help="which route and backend a request would take")
    explain.add_argument("key", metavar="KEY")
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("path", metavar="PATH")
    explain.add_argument("--app", metavar="IMPORT", help=app_help)
    explain.add_argument("--json", action="store_true", help="print one JSON document")

    demo = commands.add_parser("demo", help="a gateway with mock backends and two demo keys")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except EnvrouteError as exc:
        print(f"envroute: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(host=args.host, port=args.port)
    if args.command == "keys":
        from .lifecycle import KeyManager

        settings, store = _settings_and_store(args)
        try:
            return run_key_command(args.key_command, args, KeyManager(store, settings),
                                   sys.stdout, sys.stderr)
        finally:
            store.close()
    if args.command == "serve":
        return _serve(args)
    if args.command == "check":
        return _check(args)
    if args.command == "explain":
        return _explain(args)
    raise AssertionError(args.command)  # pragma: no cover


def _settings_and_store(args: argparse.Namespace, *, app_given: bool = False) -> Any:
    """The settings and the store; ``settings.needs_app`` is set on the namespace.

    A config written for a wrapped app routes to the backend ``app``; commands that do not
    run the app (keys, check, explain) accept it without ``--app``.
    """
    from dataclasses import replace

    from .errors import ConfigError
    from .gateway import load_settings
    from .stores import open_store

    config = getattr(args, "config", None)
    args.needs_app = app_given
    try:
        settings = load_settings(config, ["app"] if app_given else [])
    except ConfigError as exc:
        if app_given or "backend 'app' is not defined" not in exc.reason:
            raise
        settings = load_settings(config, ["app"])
        args.needs_app = True
    if getattr(args, "store", None):
        settings = replace(settings, store_url=args.store)
    return settings, open_store(settings.store_url)


def _router(args: argparse.Namespace, *, placeholder: bool) -> Any:
    from werkzeug.utils import import_string

    from .gateway import EnvRouter

    app = import_string(args.app) if args.app else None
    settings, store = _settings_and_store(args, app_given=app is not None)
    if args.needs_app and app is None:
        if not placeholder:
            store.close()
            raise EnvrouteError("this config routes to the wrapped app: pass "
                                "--app package.module:application")
        app = import_string(PLACEHOLDER_APP)
    return EnvRouter(app, settings, store=store)


def _serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    router = _router(args, placeholder=False)
    router.store.migrate()
    _log_to_stderr()
    print(f"envroute: serving on http://{args.host}:{args.port} (Ctrl-C to stop)",
          file=sys.stderr)
    run_simple(args.host, args.port, router, threaded=True)
    return 0


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _check(args: argparse.Namespace) -> int:
    router = _router(args, placeholder=True)
    results: list[dict[str, Any]] = []
    router.store.migrate()
    results.append({"name": "store", "ok": True, "detail": router.settings.store_url})
    for name, backend in sorted(router.backends.items()):
        check = getattr(backend, "check", None)
        if check is None:
            results.append({"name": f"backend {name}", "ok": True, "detail": "in-process app"})
            continue
        try:
            results.append({"name": f"backend {name}", "ok": True, "detail": check()})
        except EnvrouteError as exc:
            results.append({"name": f"backend {name}", "ok": False, "detail": str(exc)})
    failed = [r for r in results if not r["ok"]]
    if args.json:
        print(json.dumps({"ok": not failed, "config": router.settings.source,
                          "checks": results}, indent=2))
    else:
        print(f"ok    config {router.settings.source}")
        for result in results:
            print(f"{'ok' if result['ok'] else 'FAIL':<6}{result['name']}: {result['detail']}")
    if failed:
        print(f"envroute: error: {len(failed)} check(s) failed: "
              + ", ".join(r["name"] for r in failed), file=sys.stderr)
    return 1 if failed else 0


def _explain(args: argparse.Namespace) -> int:
    from .gateway import as_problem
    from .names import DRY_RUN_KEY

    router = _router(args, placeholder=True)
    path, _, query = args.path.partition("?")
    environ = {"REQUEST_METHOD": args.method.upper(), "PATH_INFO": path,
               "QUERY_STRING": query, "SCRIPT_NAME": "", DRY_RUN_KEY: True,
               "HTTP_AUTHORIZATION": f"Bearer {args.key}"}
    try:
        admission = router.admit(environ)
    except Exception as exc:
        problem = as_problem(exc)
        if args.json:
            print(json.dumps({"allowed": False, "status": problem.status,
                              "code": problem.code, "detail": problem.detail}, indent=2))
        else:
            print(f"refused   {problem.status} {problem.code}: {problem.detail}")
        return 1
    identity, decision = admission.identity, admission.decision
    route = decision.route
    targets = {name: _describe(router, name) for name in decision.backends}
    if args.json:
        print(json.dumps({"allowed": True, "identity": identity.to_dict(),
                          "route": route.label, "when": {k: sorted(v) for k, v
                                                         in route.when.items()},
                          "backends": list(decision.backends), "targets": targets}, indent=2))
        return 0
    when = ", ".join(f"{k} = {'|'.join(sorted(v))}" for k, v in route.when.items()) or "{}"
    print(f"key       {identity.key_id} ({identity.environment}, {identity.display})")
    print(f"metadata  {json.dumps(dict(identity.metadata), sort_keys=True)}")
    print(f"route     {route.label}  when {when}")
    kind = ("failover" if route.failover else "split" if route.split
            else f"from {route.backend_from}" if route.backend_from else "backend")
    print(f"{kind:<10}" + " -> ".join(f"{n} ({targets[n]})" for n in decision.backends))
    return 0


def _describe(router: Any, name: str) -> str:
    backend = router.settings.backends.get(name)
    if backend is not None and backend.url:
        return str(backend.url)
    return "the wrapped app" if name == "app" else "in-process app"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
