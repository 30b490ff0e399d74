"""The gateway under real gunicorn (several sync workers) for the fault tests (issue 16).

Every test writes a config whose dependency (PostgreSQL, Redis or a backend) is reached
through a :class:`tests.support.faults.Forwarder`, starts gunicorn on it with its output in
a log file, and counts answers by label with :func:`label`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.policies.conftest import pg_schema, pg_url, redis_url  # noqa: F401 (fixtures)
from tests.proxy.conftest import logged, upstreams  # noqa: F401 (a fixture)
from tests.support.apps import SECRET
from tests.support.processes import free_port, gunicorn_command

ROOT = Path(__file__).parents[2]
WORKERS = 3


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path
    workers: int
    pid: int  # gunicorn's master

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.read_log().splitlines() if re.search(pattern, line)]


@contextmanager
def gateway(directory: Path, config: str, *, workers: int = WORKERS) -> Iterator[Gateway]:
    """gunicorn, ``workers`` sync workers, serving ``config`` (``secret`` is added)."""
    path = directory / "envroute.toml"
    path.write_text(f'secret = "{SECRET}"\n{config}')
    port = free_port()
    log = directory / "gunicorn.log"
    with logged(gunicorn_command("envroute.wsgi:app", port, workers=workers), port=port,
                log=log, env={"ENVROUTE_CONFIG": str(path)}, cwd=ROOT) as master:
        yield Gateway(f"http://127.0.0.1:{port}", log, workers, master.pid)


def label(response: requests.Response) -> str:
    """``"200"``, ``"503 store_unavailable"``; a 500 or any non-problem error is marked."""
    status = response.status_code
    if status < 400:
        return str(status)
    if response.headers.get("Content-Type", "").startswith("application/problem+json"):
        return f"{status} {response.json()['code']}"
    return f"{status} NOT-A-PROBLEM {response.headers.get('Content-Type', '')}"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
