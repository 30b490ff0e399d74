"""Starting real server processes (gunicorn, the CLI, backends) on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None,
                  timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"process exited with {process.returncode}:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


@contextmanager
def running(command: Sequence[str], *, port: int, env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None,
            timeout: float = 20.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; wait until it listens on ``port``."""
    full_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(list(command), env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, process, timeout)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout:
        process.stdout.close()


def gunicorn_command(app: str, port: int, *, workers: int = 2, threads: int = 1,
                     worker_class: str = "sync") -> list[str]:
    command = [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--worker-class", worker_class,
               "--graceful-timeout", "2", "--log-level", "warning"]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    return command


def gunicorn_workers(master: int) -> set[int]:
    """The live worker processes of the gunicorn ``master`` (its children, from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == master and fields[0] not in ("Z", "X"):
            found.add(int(stat.parent.name))
    return found


def wait_for_workers(master: int, count: int, timeout: float = 60.0) -> set[int]:
    """The gunicorn ``master``'s workers once there are ``count`` (it listens before they
    are all forked)."""
    deadline = time.monotonic() + timeout
    while len(workers := gunicorn_workers(master)) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"gunicorn {master} has workers {workers}, not {count}")
        time.sleep(0.05)
    return workers
