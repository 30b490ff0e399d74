"""``flask envroute keys …``: the ``envroute keys`` commands, for the app's own store.

The flags and the output are exactly those of ``envroute keys`` because both are built
by :func:`envroute.keycommands.add_key_commands` and run by
:func:`envroute.keycommands.run_key_command`; click only hands its arguments over. The
configuration is the app's (``app.config["ENVROUTE"]``), so there is no ``--config``;
``--store URL`` overrides the store as it does for ``envroute``. A secret is printed once,
by ``create`` and ``roll``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import click
from flask.cli import AppGroup

from envroute import EnvrouteError, KeyManager, open_store
from envroute.keycommands import add_key_commands, run_key_command

from .extension import get_state

envroute_group = AppGroup("envroute", help="envroute: API keys for this app.")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                        help="the key store URL, overriding [store] url")
    parser = argparse.ArgumentParser(prog="flask envroute keys", parents=[common],
                                     description="Create, list, show, revoke and roll keys.")
    commands = parser.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    add_key_commands(commands, parents=[common])
    return parser


@envroute_group.command(
    "keys", add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="create, list, show, revoke and roll keys (flask envroute keys --help)",
)
@click.pass_context
def keys_command(ctx: click.Context) -> None:
    args = build_parser().parse_args(ctx.args)  # usage errors exit 2, as envroute's do
    state = get_state()
    store = state.store
    settings = state.settings
    if getattr(args, "store", None):
        settings = replace(settings, store_url=args.store)
        store = open_store(args.store)
    try:
        code = run_key_command(args.key_command, args, KeyManager(store, settings),
                               sys.stdout, sys.stderr)
        if args.key_command in ("revoke", "roll"):  # this process stops trusting it at once
            state.router.authenticator.api_keys.invalidate(args.id)
    except EnvrouteError as exc:
        click.echo(f"flask envroute: error: {exc}", err=True)
        ctx.exit(1)
    finally:
        if store is not state.store:
            store.close()
    ctx.exit(code)
