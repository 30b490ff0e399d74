"""Where the workers of one server share their metrics: prometheus_client's multiprocess dir.

Under a pre-fork server (gunicorn with several workers) every worker counts its own
requests, and a scrape reaches one worker at random. prometheus_client's multiprocess
mode makes one scrape cover all of them: each process writes its counters to memory-mapped
files in ``PROMETHEUS_MULTIPROC_DIR``, and a scrape sums every file there. It only works
if that variable is set before prometheus_client is imported in each worker, and if the
directory belongs to one server and is emptied when that server starts again. envroute does
both, so the operator does nothing:

- the directory is ``$TMPDIR/envroute-metrics-<uid>/<pid>-<start time>`` of the server's
  *master* process: in a gunicorn worker the master is the worker's parent (read from the
  worker object gunicorn installs as the SIGTERM handler before it loads the app); anywhere
  else it is the current process, which is also right under ``gunicorn --preload`` and any
  server that loads the app before forking (the workers inherit the variable);
- the process start time (Linux ``/proc``) in the name means a reused pid never inherits
  another server's counts; directories whose master is gone are removed when a gateway
  starts, and a master that built the gateway itself removes its own at exit.

Counters and histograms of exited workers (gunicorn's ``max_requests``, a crash) stay in
the sum, so totals never go down; that is why no ``mark_process_dead`` is needed (it only
matters for live gauges, which envroute does not have). Each recycled worker leaves a few
small files, read by every scrape until the server restarts.

Caveats: a ``PROMETHEUS_MULTIPROC_DIR`` the operator sets is used as is (and is theirs to
empty at start-up). Under another pre-fork server that loads the app only after forking
(uWSGI ``lazy-apps``) each worker gets its own directory: set the variable there. The base
directory is created ``0700`` and refused if another user owns it (``/tmp`` is shared).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path

from .errors import ConfigError

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
#: Set beside ENV_VAR when envroute chose it, so a child server (a test's gunicorn started
#: from a process that had metrics on) picks its own directory instead of inheriting it.
OWNED_VAR = "ENVROUTE_METRICS_DIR"


def server_pid() -> int:
    """The pid of the process whose workers share one directory (see the module docstring)."""
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    base = sys.modules.get("gunicorn.workers.base")
    if base is not None and isinstance(owner, base.Worker):
        return int(owner.ppid)
    return os.getpid()


def process_tag(pid: int) -> str:
    """``<pid>-<start time>`` (Linux), else ``<pid>``: unique even when pids are reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return str(pid)
    return f"{pid}-{fields[19]}"  # field 22 of stat(5): starttime


def base_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"envroute-metrics-{os.getuid()}"


def prepare() -> str:
    """Choose, create and export the directory; called before prometheus_client's import."""
    chosen = os.environ.get(ENV_VAR)
    if chosen and chosen != os.environ.get(OWNED_VAR):
        return chosen  # the operator's own choice
    base = base_directory()
    _private_directory(base)
    master = server_pid()
    directory = base / process_tag(master)
    directory.mkdir(mode=0o700, exist_ok=True)
    _remove_stale(base, keep=directory.name)
    os.environ[ENV_VAR] = os.environ[OWNED_VAR] = str(directory)
    if master == os.getpid():
        atexit.register(_remove_own, directory, master)
    return str(directory)


def _private_directory(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(f"{path} is not a directory of this user: set {ENV_VAR} to a "
                          "private directory for the metrics of the workers", key="metrics")


def _remove_stale(base: Path, keep: str) -> None:
    """Remove the directories of masters that are no longer running (best effort)."""
    for entry in base.iterdir():
        if entry.name == keep or not entry.name.split("-")[0].isdigit():
            continue
        pid = int(entry.name.split("-")[0])
        if _alive(pid) and process_tag(pid) == entry.name:
            continue
        shutil.rmtree(entry, ignore_errors=True)  # another gateway may be removing it too


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_own(directory: Path, master: int) -> None:
    if os.getpid() == master:  # never in a forked worker, which inherits this handler
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)
