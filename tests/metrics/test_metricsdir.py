"""Choosing and cleaning the multiprocess directory (envroute.metricsdir), without a server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn.workers.base import Worker

from envroute import metricsdir
from envroute.errors import ConfigError


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private base directory and a clean environment; the process's own are restored."""
    monkeypatch.setattr(metricsdir, "base_directory", lambda: tmp_path / "base")
    monkeypatch.delenv(metricsdir.ENV_VAR, raising=False)
    monkeypatch.delenv(metricsdir.OWNED_VAR, raising=False)
    monkeypatch.setattr(metricsdir.atexit, "register", lambda *args: None)
    return tmp_path / "base"


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def as_gunicorn_worker() -> Iterator[int]:
    """SIGTERM handled by a gunicorn worker whose master is our parent, as in a worker."""

    class FakeWorker(Worker):  # type: ignore[misc]
        def __init__(self) -> None:
            self.ppid = os.getppid()

    worker = FakeWorker()
    previous = signal.signal(signal.SIGTERM, worker.handle_exit)
    yield worker.ppid
    signal.signal(signal.SIGTERM, previous)


def test_the_directory_of_this_process(base: Path) -> None:
    directory = metricsdir.prepare()
    assert directory == str(base / metricsdir.process_tag(os.getpid()))
    assert os.environ[metricsdir.ENV_VAR] == os.environ[metricsdir.OWNED_VAR] == directory
    assert Path(directory).is_dir()
    assert base.stat().st_mode & 0o777 == 0o700


def test_a_gunicorn_worker_shares_its_masters_directory(base: Path,
                                                        as_gunicorn_worker: int) -> None:
    assert metricsdir.server_pid() == as_gunicorn_worker
    assert Path(metricsdir.prepare()).name == metricsdir.process_tag(as_gunicorn_worker)


def test_the_operators_variable_is_used_as_is(base: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metricsdir.ENV_VAR, str(tmp_path / "mine"))
    assert metricsdir.prepare() == str(tmp_path / "mine")
    assert not base.exists()


def test_a_directory_inherited_from_another_gateway_is_replaced(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gunicorn started by a process that had metrics on must not count into its dir."""
    monkeypatch.setenv(metricsdir.ENV_VAR, "/elsewhere/123")
    monkeypatch.setenv(metricsdir.OWNED_VAR, "/elsewhere/123")
    assert metricsdir.prepare() == str(base / metricsdir.process_tag(os.getpid()))


@pytest.mark.parametrize("name", [
    pytest.param("{dead}", id="a-master-that-exited"),
    pytest.param("{dead}-1", id="a-master-that-exited-with-start-time"),
    pytest.param("{live}-1", id="a-reused-pid"),
])
def test_stale_directories_are_removed(base: Path, dead_pid: int, name: str) -> None:
    stale = base / name.format(dead=dead_pid, live=os.getppid())
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"old counts")
    metricsdir.prepare()
    assert not stale.exists()


@pytest.mark.parametrize("name", [
    pytest.param("{live}", id="a-running-master"),
    pytest.param("not-a-pid", id="not-ours"),
])
def test_live_directories_are_kept(base: Path, name: str) -> None:
    parent = os.getppid()
    kept = base / (metricsdir.process_tag(parent) if name == "{live}" else name)
    kept.mkdir(parents=True)
    metricsdir.prepare()
    assert kept.exists()


def test_a_base_directory_of_another_kind_is_refused(base: Path) -> None:
    base.parent.mkdir(exist_ok=True)
    base.symlink_to(base.parent)
    with pytest.raises(ConfigError, match="not a directory of this user"):
        metricsdir.prepare()
