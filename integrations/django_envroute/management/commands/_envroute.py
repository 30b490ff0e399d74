"""What the ``envroute_*`` management commands share: ``envroute``'s own argparse builders
and runner, against the project's configuration (``settings.ENVROUTE``) and store.

``manage.py envroute_keys|envroute_customers|envroute_backends|envroute_audit`` take the
flags of ``envroute keys|customers|backends|audit`` (built by
:func:`envroute.cli.add_group_arguments`) and print the same output. The store is the
project's database unless ``store.url`` says otherwise; ``--store URL`` overrides it.
Changes go through the project's gateway (``router.keys`` …), so this process honours
them at once, the audit log names ``--actor`` (default: the OS user) and the
``envroute_event`` signal is sent. Errors exit 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NoReturn, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from envroute import EnvrouteError, open_store
from envroute.cli import AUDIT_HELP, GROUPS, Parser, add_group_arguments, one_line, run_group
from envroute.commandtools import Managers
from envroute.config import store_url_option

from ...gateway import get_router


class _Plain:
    """Lets the runner write through Django's wrapper, byte for byte."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, style_func=lambda s: s, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()


class _OneLineParser(CommandParser):
    """Django's parser, with a usage error from the command line as ``envroute``'s one
    line (exit 2, never echoing a secret); called from code it raises CommandError."""

    def error(self, message: str) -> NoReturn:
        if self.called_from_command_line:
            Parser.error(cast(Parser, self), message)
        raise CommandError(f"Error: {message}")


@contextmanager
def _quiet_start() -> Iterator[None]:
    """The gateway warns when it starts without its store, as a server should; a command
    then fails on that store with its own line, so the warning would be a second line
    saying the same thing (§10: one line). Only the start-up's own records are dropped."""
    log = logging.getLogger("envroute")

    def drop(record: logging.LogRecord) -> bool:
        return False

    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


class GroupCommand(BaseCommand):
    """One ``envroute`` command group as a management command."""

    group = "keys"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        text = AUDIT_HELP if self.group == "audit" else GROUPS[self.group][0]
        self.help = f"{text[:1].upper()}{text[1:]} (as `envroute {self.group}`)."

    def add_arguments(self, parser: Any) -> None:
        if isinstance(parser, CommandParser):  # before the sub-parsers, which take its class
            parser.__class__ = _OneLineParser
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                            help="the key store URL, overriding ENVROUTE['store']['url']")
        if self.group == "audit":
            parser.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                                help="the key store URL, overriding ENVROUTE['store']['url']")
        add_group_arguments(parser, self.group, common)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        try:
            with _quiet_start():
                router = get_router()
            settings, store = router.settings, router.store
            actor = options.get("actor")
            if options.get("store"):  # checked as envroute's and flask envroute's --store
                settings = replace(settings, store_url=store_url_option(options["store"]))
                store = open_store(settings.store_url)
                managers = Managers.build(store, settings, actor=actor)
            else:
                managers = Managers.of_router(router, actor)
            try:
                run_group(self.group, namespace, store, settings, managers=managers,
                          out=cast(TextIO, _Plain(self.stdout)),
                          err=cast(TextIO, _Plain(self.stderr)))
            finally:
                if store is not router.store:
                    store.close()
        except EnvrouteError as exc:
            raise CommandError(one_line(str(exc))) from None
        except Exception as exc:  # §10: one line whatever the cause, as envroute's own
            if options.get("traceback") or os.environ.get("ENVROUTE_DEBUG"):
                raise
            text = one_line(str(exc))
            raise CommandError(f"{type(exc).__name__}{': ' + text if text else ''} "
                               "(--traceback shows the traceback)") from None
