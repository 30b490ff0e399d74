"""What the live-placement tests share: real upstreams, gunicorn gateways, the console script.

Everything here runs as an operator would run it: ``envroute`` is the installed console
script (a subprocess), the gateways are gunicorn masters with several workers, and the
backends are ``tests/proxy/upstream.py`` processes that answer with their own ``name``, so
"which backend served it" is read from the answer, never assumed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.apps import SECRET
from tests.support.processes import BIN, free_port, gunicorn_command, running

ROOT = Path(__file__).parents[2]
UPSTREAM = ROOT / "tests" / "proxy" / "upstream.py"

#: §11's second, plus room for a machine shared with other test runs (never a fixed sleep:
#: the tests wait for a condition and only fail when this much more has passed)
PROPAGATION = 1.0
SLACK = 2.0


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str


@contextmanager
def logged(command: list[str], *, port: int, log: Path,
           env: dict[str, str] | None = None) -> Iterator[None]:
    """:func:`running` with the output in ``log``: a pipe nobody reads would fill up under
    steady traffic (access lines) and stall the server."""
    wrapped = ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log), *command]
    with running(wrapped, port=port, env=env, cwd=ROOT):
        yield


@contextmanager
def upstream(name: str, logs: Path) -> Iterator[Upstream]:
    port = free_port()
    with logged([sys.executable, str(UPSTREAM), "--port", str(port), "--name", name],
                port=port, log=logs / f"upstream-{name}.log"):
        yield Upstream(name, f"http://127.0.0.1:{port}")


def write_config(directory: Path, store_url: str, default_backend: str) -> Path:
    """Customers whose metadata names a ``dedicated-*`` backend go there; the rest to
    ``main`` (§13's two routes)."""
    path = directory / "envroute.toml"
    path.write_text(f"""
secret = "{SECRET}"
[store]
url = "{store_url}"
[auth]
cache_ttl = "60s"   # only the change push can make a change visible within a second
[backends.main]
{default_backend}
[[routes]]
when = {{}}
backend_from = "backend"
allow = ["dedicated-*"]
[[routes]]
when = {{}}
backend = "main"
""")
    return path


@contextmanager
def gateways(config: Path, logs: Path, *, count: int, workers: int) -> Iterator[list[str]]:
    """``count`` gunicorn gateways of ``workers`` sync workers each; their request URLs."""
    with ExitStack() as stack:
        urls = []
        for index in range(count):
            port = free_port()
            stack.enter_context(logged(
                gunicorn_command("envroute.wsgi:app", port, workers=workers), port=port,
                log=logs / f"gateway-{index}.log", env={"ENVROUTE_CONFIG": str(config)}))
            urls.append(f"http://127.0.0.1:{port}/v1/charges")
        yield urls


def envroute(config: Path, *args: str) -> str:
    """The console script, as an operator types it; stdout (fails the test on exit != 0)."""
    result = subprocess.run([str(BIN / "envroute"), "--config", str(config), *args],
                            capture_output=True, text=True, timeout=60, cwd=config.parent)
    assert result.returncode == 0, f"envroute {' '.join(args)}: {result.stderr}"
    return result.stdout


def envroute_json(config: Path, *args: str) -> Any:
    return json.loads(envroute(config, *args, "--json"))


def observe(response: requests.Response) -> tuple[str, dict[str, Any]]:
    """What a request saw: ``"200 <backend name>"`` or ``"<status> <problem code>"``."""
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:80]!r}", {}
    if response.status_code == 200:
        return f"200 {body.get('name')}", body
    return f"{response.status_code} {body.get('code')}", body
