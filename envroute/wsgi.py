"""``envroute.wsgi:app``: the standalone gateway for gunicorn and other WSGI servers.

    ENVROUTE_CONFIG=envroute.toml gunicorn envroute.wsgi:app

The config is read when this module is imported, so a broken config stops the server at
start-up rather than failing requests later. Under gunicorn the failure is ONE line on stderr
(``envroute: error: …``) and the server stops with gunicorn's "App failed to load" status (4):
an operator reading the boot log must see the cause, not a traceback per worker and a master
that re-spawns them.

The risk is gunicorn's own: when two workers exit with status 4 the master raises its halt a
second time while stopping and prints two tracebacks. So only the FIRST worker of a master to
fail says so and exits 4; the others exit 0 silently (the master is already halting; one that
exits first is re-spawned and fails the same way). "First" is an ``O_EXCL`` file named after
the master's pid and start time, so a reused pid never silences a later boot. Outside gunicorn
the ``EnvrouteError`` is raised as is (a program importing this module can catch it).
"""

from __future__ import annotations

import os
import sys
import tempfile

from .errors import EnvrouteError
from .gateway import EnvRouter

#: gunicorn's ``Arbiter.APP_LOAD_ERROR``: the master halts with "App failed to load."
APP_LOAD_ERROR = 4


def _gunicorn_role() -> str:
    """``"worker"``, ``"master"`` (``--preload``) or ``""`` when gunicorn is not serving us."""
    if "gunicorn.arbiter" not in sys.modules:
        return ""
    return "worker" if "gunicorn.workers.base" in sys.modules and _in_worker() else "master"


def _in_worker() -> bool:
    """A worker is forked from the master, so its parent is a gunicorn process too."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return b"gunicorn" in handle.read()
    except OSError:
        return True  # not Linux: gunicorn loads the app in workers unless --preload


def _first_to_fail() -> bool:
    """Whether this worker is the first of its master to fail (see the module docstring)."""
    master = os.getppid()
    try:
        with open(f"/proc/{master}/stat", "rb") as handle:
            started = handle.read().rsplit(b")", 1)[-1].split()[19].decode()
    except (OSError, IndexError):
        started = "0"
    path = os.path.join(tempfile.gettempdir(), f"envroute-boot-failed-{master}-{started}")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def _load() -> EnvRouter:
    try:
        return EnvRouter()
    except EnvrouteError as exc:
        role = _gunicorn_role()
        if not role:
            raise
        if role == "worker" and not _first_to_fail():
            raise SystemExit(0) from None
        # one write(2): other workers and the master share this pipe, and print() may split
        # the text from its newline, letting a gunicorn line land in the middle
        os.write(2, f"envroute: error: {exc}\n".encode(errors="replace"))
        raise SystemExit(APP_LOAD_ERROR) from None


app = _load()
application = app
