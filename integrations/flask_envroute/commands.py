"""``flask envroute keys|customers|backends|audit …``: the ``envroute`` commands, for the
app's own store.

The flags and the output are exactly those of ``envroute`` because both are built by
:func:`envroute.cli.add_group_arguments` and run by :func:`envroute.cli.run_group`; click
only hands its arguments over. The configuration is the app's (``app.config["ENVROUTE"]``),
so there is no ``--config``; ``--store URL`` overrides the store as it does for
``envroute``. Changes go through the app's gateway (``router.keys`` …), so this process
honours them at once and the audit log names the ``--actor`` (default: the OS user).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import click
from flask.cli import AppGroup

from envroute import EnvrouteError, open_store
from envroute.cli import AUDIT_HELP, GROUPS, Parser, add_group_arguments, one_line, run_group
from envroute.commandtools import Managers
from envroute.config import store_url_option

from .state import get_state

envroute_group = AppGroup("envroute", help="envroute: API keys, customers, stored "
                                           "backends and the audit log for this app.")


def build_parser(group: str = "keys") -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                        help="the key store URL, overriding [store] url")
    help_text = AUDIT_HELP if group == "audit" else GROUPS[group][0]
    parser = Parser(prog=f"flask envroute {group}", parents=[common],
                                     description=help_text[:1].upper() + help_text[1:] + ".")
    add_group_arguments(parser, group, common)
    return parser


def _run(ctx: click.Context, group: str) -> None:
    args = build_parser(group).parse_args(ctx.args)  # usage errors exit 2, as envroute's do
    state = get_state()
    store, settings = state.store, state.settings
    actor = getattr(args, "actor", None)
    try:
        if getattr(args, "store", None):
            settings = replace(settings, store_url=store_url_option(args.store))
            store = open_store(settings.store_url)
            managers = Managers.build(store, settings, actor=actor)
        else:
            managers = Managers.of_router(state.router, actor)
        try:
            code = run_group(group, args, store, settings, managers=managers)
        finally:
            if store is not state.store:
                store.close()
    except EnvrouteError as exc:
        click.echo(f"flask envroute: error: {one_line(str(exc))}", err=True)
        ctx.exit(1)
    except Exception as exc:  # §10: one line whatever the cause, as envroute's own
        if os.environ.get("ENVROUTE_DEBUG"):
            raise
        text = one_line(str(exc))
        click.echo(f"flask envroute: error: {type(exc).__name__}{': ' + text if text else ''}"
                   " (ENVROUTE_DEBUG=1 shows the traceback)", err=True)
        ctx.exit(1)
    sys.stdout.flush()
    ctx.exit(code)


def _command(group: str) -> None:
    help_text = AUDIT_HELP if group == "audit" else GROUPS[group][0]

    @envroute_group.command(
        group, add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"{help_text} (flask envroute {group} --help)")
    @click.pass_context
    def command(ctx: click.Context) -> None:
        _run(ctx, group)


for _group in (*GROUPS, "audit"):
    _command(_group)
