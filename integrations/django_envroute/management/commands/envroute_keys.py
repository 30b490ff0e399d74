"""``manage.py envroute_keys create|list|show|revoke|roll``: ``envroute keys`` for Django.

The flags and output are those of ``envroute keys`` (built by
:func:`envroute.keycommands.add_key_commands`), against the project's configuration
(``settings.ENVROUTE``) and store (the project's database unless ``store.url`` says
otherwise; ``--store URL`` overrides it). The secret is printed once, by ``create`` and
``roll``; errors exit 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from envroute import EnvrouteError, KeyManager, open_store
from envroute.keycommands import add_key_commands, run_key_command

from ...gateway import forget_key, get_router


class _Plain:
    """Lets ``run_key_command`` write through Django's wrapper, byte for byte."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, style_func=lambda s: s, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()


class Command(BaseCommand):
    help = "Create, list, show, revoke and roll envroute API keys (as `envroute keys`)."

    def add_arguments(self, parser: Any) -> None:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                            help="the key store URL, overriding ENVROUTE['store']['url']")
        actions = parser.add_subparsers(dest="key_command", required=True, metavar="ACTION")
        add_key_commands(actions, parents=[common])

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            router = get_router()
            settings, store = router.settings, router.store
            if options.get("store"):
                settings = replace(settings, store_url=options["store"])
                store = open_store(options["store"])
            try:
                run_key_command(options["key_command"], argparse.Namespace(**options),
                                KeyManager(store, settings), cast(TextIO, _Plain(self.stdout)),
                                cast(TextIO, _Plain(self.stderr)))
                if options["key_command"] in ("revoke", "roll"):
                    forget_key(options["id"])
            finally:
                if store is not router.store:
                    store.close()
        except EnvrouteError as exc:
            raise CommandError(str(exc)) from None
