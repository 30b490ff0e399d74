"""Fixtures for the proxy's tests: real upstream processes and gateways in front of them.

Two upstreams (``tests/proxy/upstream.py``, named ``primary`` and ``secondary``) run for
the whole session on loopback ports; one config (``CONFIG``) names every backend the
tests need. ``client`` drives an in-process :class:`EnvRouter` through werkzeug's test
client; ``gunicorn_gateway`` runs the same config under a real gunicorn (one gthread
worker) where real sockets matter. ``keys`` holds one sandbox key per route.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.test import Client

from envroute import EnvRouter, KeyManager
from tests.support.apps import SECRET
from tests.support.processes import free_port, gunicorn_command, running

UPSTREAM = Path(__file__).with_name("upstream.py")
SIGNING_SECRET = "signing-secret-for-the-proxy-tests"
ROUTES = ("echo", "based", "secondary", "dead", "slow", "blackhole", "failover-dead",
          "failover-reset", "split")

CONFIG = """
secret = "{secret}"
signing_secret = "{signing_secret}"
[store]
url = "sqlite:///{db}"
[backends.echo]
url = "http://127.0.0.1:{primary}"
[backends.based]
url = "http://127.0.0.1:{primary}/base"
strip_prefix = "/sandbox"
[backends.secondary]
url = "http://127.0.0.1:{secondary}"
[backends.dead]
url = "http://127.0.0.1:{dead}"
[backends.slow]
url = "http://127.0.0.1:{primary}"
timeout = "500ms"
[backends.blackhole]
url = "http://127.0.0.1:{blackhole}"
connect_timeout = "300ms"
{single_routes}
[[routes]]
when = {{route = "failover-dead"}}
failover = ["dead", "secondary"]
[[routes]]
when = {{route = "failover-reset"}}
failover = ["echo", "secondary"]
[[routes]]
when = {{route = "split"}}
split = {{echo = 1, secondary = 1}}
"""


@dataclass(frozen=True)
class Upstream:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with requests.get(f"{self.url}/__stats__", timeout=5) as response:
            result: dict[str, Any] = response.json()
            return result

    def reset(self) -> None:
        requests.post(f"{self.url}/__reset__", timeout=5).close()


@contextmanager
def logged(command: list[str], *, port: int, log: Path, **kwargs: Any) -> Iterator[Any]:
    """:func:`running`, with the output in ``log`` (a pipe nobody reads could fill up).

    ``exec`` keeps the process id, so the process is still the one ``running`` stops.
    """
    wrapped = ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log), *command]
    with running(wrapped, port=port, **kwargs) as process:
        yield process


@pytest.fixture(scope="session")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    logs = tmp_path_factory.mktemp("upstreams")
    with ExitStack() as stack:
        found = {}
        for name in ("primary", "secondary"):
            port = free_port()
            stack.enter_context(logged(
                [sys.executable, str(UPSTREAM), "--port", str(port), "--name", name],
                port=port, log=logs / f"{name}.log"))
            found[name] = Upstream(name, port)
        yield found


@pytest.fixture
def primary(upstreams: dict[str, Upstream]) -> Upstream:
    upstreams["primary"].reset()
    return upstreams["primary"]


@pytest.fixture
def secondary(upstreams: dict[str, Upstream]) -> Upstream:
    upstreams["secondary"].reset()
    return upstreams["secondary"]


@pytest.fixture(scope="session")
def blackhole_port() -> Iterator[int]:
    """A port whose connect never completes: a listener that never accepts, its backlog
    full, so the kernel drops further SYNs (a connect timeout, on loopback)."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        yield port


@pytest.fixture(scope="session")
def config_path(tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, Upstream],
                blackhole_port: int) -> Path:
    folder = tmp_path_factory.mktemp("gateway")
    single = "".join(f'[[routes]]\nwhen = {{route = "{name}"}}\nbackend = "{name}"\n'
                     for name in ("echo", "based", "secondary", "dead", "slow", "blackhole"))
    path = folder / "envroute.toml"
    path.write_text(CONFIG.format(
        secret=SECRET, signing_secret=SIGNING_SECRET, db=folder / "keys.db",
        primary=upstreams["primary"].port, secondary=upstreams["secondary"].port,
        dead=free_port(), blackhole=blackhole_port, single_routes=single))
    return path


@pytest.fixture(scope="session")
def gateway(config_path: Path) -> Iterator[EnvRouter]:
    router = EnvRouter(None, config_path)
    yield router
    for backend in router.backends.values():
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    router.store.close()


@pytest.fixture(scope="session")
def keys(gateway: EnvRouter) -> dict[str, str]:
    """One sandbox key per route (metadata ``route``), plus ``split-0``…``split-19``."""
    manager = KeyManager(gateway.store, gateway.settings)
    made = {route: manager.create("sandbox", metadata={"route": route, "customer": "cus_1"})
            for route in ROUTES}
    made.update({f"split-{i}": manager.create("sandbox", metadata={"route": "split"})
                 for i in range(20)})
    return {name: issued.secret for name, issued in made.items()}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def echoed(body: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(body)
    return result


def header_map(echo: dict[str, Any]) -> dict[str, list[str]]:
    """The headers the upstream received, by lower-case name."""
    found: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


@pytest.fixture
def client(gateway: EnvRouter) -> Client:
    return Client(gateway)


@dataclass(frozen=True)
class Gateway:
    port: int
    pid: int
    log: Path

    @property
    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def gunicorn_gateway(config_path: Path, keys: dict[str, str]) -> Iterator[Gateway]:
    """The gateway under gunicorn: one gthread worker (4 threads), so its memory and its
    connection pool are one process's."""
    port = free_port()
    log = config_path.with_name("gunicorn.log")
    command = gunicorn_command("envroute.wsgi:app", port, workers=1, threads=4,
                               worker_class="gthread")
    with logged(command, port=port, log=log, env={"ENVROUTE_CONFIG": str(config_path)},
                cwd=config_path.parent) as process:
        yield Gateway(port, process.pid, log)
