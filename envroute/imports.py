"""Import strings: ``"package.module:attr"`` and ``"package.module:create_app()"``.

One loader for every import string envroute reads: a backend's ``app`` in config, the
CLI's ``--app`` and ``[events] hooks``. It behaves as gunicorn and ``flask`` do: the
current directory is on the import path (so ``envroute check --app myproject.wsgi:app``
works from the project's folder with no ``PYTHONPATH``), and a trailing ``()`` calls a
factory with no arguments.

Risk: importing runs the user's code. Whatever it raises (a missing module, a syntax
error, a factory that fails) becomes one :class:`~envroute.errors.ConfigError` line that
names the string and the cause, never a traceback on a user's terminal or in gunicorn's
boot log.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .errors import ConfigError

__all__ = ["import_object"]


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _with_cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_object(text: str, *, what: str = "app", key: str = "",
                  source: str = "<config>") -> Any:
    """The object ``text`` names (``module:attr``, ``module:attr.sub`` or ``module:f()``).

    ``what`` words the error (``"app"``, ``"hook"``); ``key`` and ``source`` say where the
    string came from, as every :class:`ConfigError` does.
    """
    def fail(reason: str) -> ConfigError:
        return ConfigError(f"cannot import {what} {text!r}: {reason}", key=key,
                           source=source)

    module_name, sep, attribute = text.strip().partition(":")
    call = attribute.endswith("()")
    if call:
        attribute = attribute[:-2]
    if not sep or not module_name or not attribute:
        raise fail("expected 'package.module:attribute' or 'package.module:factory()'")
    _with_cwd_on_path()
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: anything may go wrong in it
        raise fail(_cause(exc)) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise fail(f"{module_name} has no attribute {attribute!r}") from None
    if call:
        if not callable(target):
            raise fail(f"{attribute} is not callable")
        try:
            target = target()
        except Exception as exc:  # a failing factory is the user's error, reported in one line
            raise fail(f"{attribute}() raised {_cause(exc)}") from None
    return target
