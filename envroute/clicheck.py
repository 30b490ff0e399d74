"""``envroute serve``, ``check`` and ``explain``: the commands that build a gateway.

``check`` is what an operator trusts before a deploy, so it says only what it verified:
the config (validated in one pass), the store (its URL printed without a password; its
secrets checked against ``secret`` and ``previous_secrets``), every URL backend reached
(configured and stored), a Redis rate-limit storage reached and a JWKS URL fetched (each
is what every request it concerns depends on), and the lints of §17 (warnings;
``--strict`` makes them fail).
``explain`` is a dry run of the request's path that also says where each metadata value
came from (the customer or the key), since effective metadata is what routing sees.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from .errors import ConfigError, EnvrouteError
from .settings import APP_BACKEND, BackendSettings
from .urls import redact_url


def settings_and_store(args: argparse.Namespace, *, app_given: bool = False) -> Any:
    """The settings and the store; ``args.needs_app`` says whether the config routes to
    the wrapped app (``keys``, ``check`` and ``explain`` accept such a config without
    ``--app``). Decided by parsing, never by matching an error message."""
    from .config import load_settings
    from .stores import open_store

    config = getattr(args, "config", None)
    args.needs_app = app_given
    if app_given:
        settings = load_settings(config, [APP_BACKEND])
    else:
        try:
            settings = load_settings(config, [])
        except ConfigError as first:
            try:
                settings = load_settings(config, [APP_BACKEND])
            except ConfigError:
                raise first from None
            if not _routes_to_app(settings):
                raise
            args.needs_app = True
    if getattr(args, "store", None):
        from .config import store_url_option

        settings = replace(settings, store_url=store_url_option(args.store))
    return settings, open_store(settings.store_url)


def _routes_to_app(settings: Any) -> bool:
    return any(APP_BACKEND in (route.backend, *route.split, *route.failover)
               for route in settings.routes)


def import_app(text: str) -> Any:
    """``--app``: imported as gunicorn does (current directory first, ``factory()``)."""
    from .errors import ConfigError
    from .imports import import_object

    app = import_object(text, what="app", source="--app")
    if not callable(app):  # a module attribute or a factory's result that is no app
        raise ConfigError(f"{text!r} is not a WSGI application (it is {type(app).__name__}, "
                          "not callable)", source="--app")
    return app


def build_router(args: argparse.Namespace, *, placeholder: bool,
                 migrate: bool = False) -> Any:
    """The gateway a command runs; with ``migrate``, the store is opened (and migrated)
    first, so a store that is down is the command's one line, before the gateway starts
    and logs that it is starting without one (a server under gunicorn should; a command
    should not)."""
    from .gateway import EnvRouter

    app = import_app(args.app) if args.app else None
    settings, store = settings_and_store(args, app_given=app is not None)
    if args.needs_app and app is None:
        if not placeholder:
            store.close()
            raise EnvrouteError("this config routes to the wrapped app: pass "
                                "--app package.module:application")
        app = _placeholder
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return EnvRouter(app, settings, store=store)


def _placeholder(environ: Any, start_response: Any) -> list[bytes]:
    start_response("501 Not Implemented", [("Content-Type", "text/plain")])
    return [b"the wrapped application is not loaded in this command\n"]


def serve(args: argparse.Namespace) -> int:
    router = build_router(args, placeholder=False, migrate=True)
    from .serving import serve as run_server

    run_server(router, args.host, args.port)
    return 0


def _reach(name: str, backend: Any) -> dict[str, Any]:
    if backend is _placeholder:  # the config routes to the wrapped app; none was given
        return {"name": f"backend {name}", "ok": True, "detail": "the wrapped app, not "
                "imported (--app package.module:application imports it)"}
    check = getattr(backend, "check", None)
    if check is None:
        return {"name": f"backend {name}", "ok": True, "detail": "in-process app, imported"}
    try:
        return {"name": f"backend {name}", "ok": True, "detail": check()}
    except EnvrouteError as exc:
        return {"name": f"backend {name}", "ok": False, "detail": str(exc)}


def _stored_backends(router: Any) -> list[dict[str, Any]]:
    """Reach every stored backend through the proxy the gateway would build for it."""
    from .proxy import ProxyBackend

    results = []
    try:
        records = router.store.list_backends()
    except NotImplementedError:  # pragma: no cover - a store without stored backends
        return []
    for record in records:
        try:
            backend = ProxyBackend(BackendSettings(
                name=record.name, url=record.url, timeout=record.timeout,
                connect_timeout=record.connect_timeout, strip_prefix=record.strip_prefix,
                pool_size=record.pool_size))
        except (ValueError, EnvrouteError) as exc:  # a record no validation made: not served
            results.append({"name": f"backend {record.name} (stored)", "ok": False,
                            "detail": f"not served: {' '.join(str(exc).split())}"})
            continue
        try:
            result = _reach(record.name, backend)
        finally:
            backend.close()
        result["name"] += " (stored)"
        results.append(result)
    return results


def _outside(router: Any) -> list[dict[str, Any]]:
    """Reach what requests depend on besides the store and backends: a Redis rate-limit
    storage (counted once, as a request counts) and a JWKS URL (fetched, its keys
    counted). With either down every request it concerns fails, so each fails ``check``;
    a ``memory://`` storage or keys in the config have nothing to reach and no line."""
    from .errors import StoreUnavailable

    parts: list[tuple[str, str, Any]] = []
    for policy in router.policies:
        if hasattr(policy, "reach"):  # the rate-limit policy, built when rules exist
            shown = redact_url(policy.settings.storage, drop_query=True)
            parts.append(("rate limits", shown, policy.reach))
    tokens = router.authenticator.tokens
    if tokens is not None and tokens.jwks_url:
        parts.append(("jwt", tokens.jwks_url, tokens.reach))
    results = []
    for name, shown, reach in parts:
        try:
            detail = reach()
        except StoreUnavailable as exc:
            cause = str(exc).removeprefix("rate-limit storage unavailable: ")
            results.append({"name": name, "ok": False, "detail": f"{shown}: {cause}"})
            continue
        if detail is not None:
            results.append({"name": name, "ok": True, "detail": f"{shown}: {detail}"})
    return results


def _hooks(settings: Any) -> list[dict[str, Any]]:
    """Import ``[events] hooks`` as every command that changes something will, so a hook
    that cannot be imported fails ``check`` instead of the first ``keys create``."""
    from .audit import load_hooks
    from .errors import ConfigError

    hooks = settings.events.hooks
    if not hooks:
        return []
    try:
        load_hooks(hooks, settings.source)
    except ConfigError as exc:
        return [{"name": "events hooks", "ok": False, "detail": " ".join(str(exc).split())}]
    return [{"name": "events hooks", "ok": True, "detail": f"{len(hooks)} imported"}]


def _lints(router: Any) -> list[str]:
    from .lint import lint

    return lint(router.settings, router.store)


def check(args: argparse.Namespace) -> int:
    from .secrets import verify_store_secrets

    router = build_router(args, placeholder=True)
    results: list[dict[str, Any]] = []
    router.store.migrate()
    previous = verify_store_secrets(router.store, router.settings)
    detail = redact_url(router.settings.store_url)
    if previous:
        detail += (f" ({previous} key secret{'s' if previous != 1 else ''} still under a "
                   "previous secret: keep previous_secrets until this is 0)")
    results.append({"name": "store", "ok": True, "detail": detail})
    for name, backend in sorted(router.backends.items()):
        results.append(_reach(name, backend))
    results.extend(_stored_backends(router))
    results.extend(_outside(router))
    results.extend(_hooks(router.settings))
    warnings = _lints(router)
    if previous:  # a lint of §17 as well: --strict fails until the store is re-hashed
        warnings.append(f"{previous} key secret{'s' if previous != 1 else ''} still under a "
                        "previous secret (each is re-hashed under `secret` when it is next "
                        "used; remove previous_secrets once none is left)")
    failed = [r for r in results if not r["ok"]]
    if args.json:
        print(json.dumps({"ok": not failed and not (args.strict and warnings),
                          "config": router.settings.source, "checks": results,
                          "warnings": warnings}, indent=2))
    else:
        print(f"ok    config {router.settings.source}")
        for result in results:
            print(f"{'ok' if result['ok'] else 'FAIL':<6}{result['name']}: {result['detail']}")
        for warning in warnings:
            print(f"warn  {warning}")
    router.store.close()
    if failed:
        print(f"envroute: error: {len(failed)} check(s) failed: "
              + ", ".join(r["name"] for r in failed), file=sys.stderr)
        return 1
    if warnings and args.strict:
        print(f"envroute: error: {len(warnings)} warning(s) and --strict", file=sys.stderr)
        return 1
    return 0


def _sources(router: Any, identity: Any) -> dict[str, str]:
    """metadata name -> ``customer`` or ``key`` (or ``token`` for a JWT's claims)."""
    if identity.source != "api_key":
        customer_meta = _customer_metadata(router, identity.customer_id)
        return {name: "customer" if name in customer_meta
                and customer_meta[name] == value else "token"
                for name, value in identity.metadata.items()}
    own = router.store.get(identity.key_id).metadata
    return {name: "key" if name in own else "customer" for name in identity.metadata}


def _customer_metadata(router: Any, customer_id: str | None) -> Any:
    if not customer_id:
        return {}
    try:
        return router.store.get_customer(customer_id).metadata
    except EnvrouteError:
        return {}


def explain(args: argparse.Namespace) -> int:
    from .gateway import as_problem
    from .names import DRY_RUN_KEY

    router = build_router(args, placeholder=True)
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
        # Exit 1 is a failure, and a failure is one line on stderr (§10), as `check`
        # does: the explanation on stdout, the verdict there. Never the key: the detail
        # shows it as prefix…last4 at most, and is left to stdout.
        print(f"envroute: error: the request would be refused: {problem.status} "
              f"{problem.code}", file=sys.stderr)
        return 1
    identity, decision = admission.identity, admission.decision
    route = decision.route
    sources = _sources(router, identity)
    targets = {name: _describe(router, name) for name in decision.backends}
    if args.json:
        print(json.dumps({"allowed": True, "identity": identity.to_dict(),
                          "metadata_sources": sources, "route": route.label,
                          "when": {k: sorted(v) for k, v in route.when.items()},
                          "backends": list(decision.backends), "targets": targets}, indent=2))
        return 0
    when = ", ".join(f"{k} = {'|'.join(sorted(v))}" for k, v in route.when.items()) or "{}"
    customer = f", customer {identity.customer_id}" if identity.customer_id else ""
    print(f"key       {identity.key_id} ({identity.environment}{customer}, "
          f"{identity.display})")
    print(f"metadata  {json.dumps(dict(identity.metadata), sort_keys=True)}")
    for name in sorted(identity.metadata):
        print(f"          {name} = {json.dumps(identity.metadata[name])}  from the "
              f"{sources.get(name, 'key')}")
    print(f"route     {route.label}  when {when}")
    kind = ("failover" if route.failover else "split" if route.split
            else f"from {route.backend_from}" if route.backend_from else "backend")
    # "from backend" is wider than the column: a space always parts it from the name.
    print(f"{kind:<9} " + " -> ".join(f"{n} ({targets[n]})" for n in decision.backends))
    return 0


def _describe(router: Any, name: str) -> str:
    backend = router.settings.backends.get(name)
    if backend is not None and backend.url:
        return str(backend.url)
    if name == APP_BACKEND:
        return "the wrapped app"
    if backend is None:
        try:
            return f"{router.store.get_backend(name).url}, stored"
        except (EnvrouteError, NotImplementedError):
            return "stored backend"
    return "in-process app"
