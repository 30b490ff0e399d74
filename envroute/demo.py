"""``envroute demo``: a working gateway in one command, with no config at all.

It builds everything in a scratch directory that is removed on exit: a config file and a
SQLite key store, a sandbox backend serving mock data (in-process), a shared production
backend and a dedicated one, each its own process on a free local port (reached through
the streaming proxy, as real upstreams would be), and a customer, ``acme``, with one test
key and one live key. It prints curl lines that work as pasted, and the one command that
moves ``acme`` to its dedicated backend (``customers update acme --meta backend=…``): the
same live key then lands there within about a second, with no restart and no new key.
It serves until Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from .commandtools import Managers
from .errors import EnvrouteError
from .gateway import EnvRouter

DEDICATED = "dedicated-acme"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_production(port: int, *flags: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "envroute.demo_apps", "--port", str(port),
                                *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EnvrouteError("the demo's production backend failed to start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise EnvrouteError("the demo's production backend did not start in time")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _config(scratch: Path, production_port: int, dedicated_port: int) -> Path:
    """The demo's envroute.toml, so the printed ``envroute … customers update`` works."""
    path = scratch / "envroute.toml"
    path.write_text(f"""# envroute demo (removed when the demo stops)
secret = "{secrets.token_urlsafe(32)}"
[store]
url = "sqlite:///{scratch / 'demo.db'}"
[backends.sandbox]
app = "envroute.demo_apps:sandbox_app"
[backends.production]
url = "http://127.0.0.1:{production_port}"
timeout = "10s"
[backends.{DEDICATED}]
url = "http://127.0.0.1:{dedicated_port}"
timeout = "10s"

[[routes]]
name = "sandbox keys"
when = {{environment = "sandbox"}}
backend = "sandbox"

[[routes]]
name = "customers placed on their own backend"
when = {{environment = "production"}}
backend_from = "backend"
allow = ["dedicated-*"]

[[routes]]
name = "live keys, shared"
when = {{environment = "production"}}
backend = "production"
""")
    return path


def _envroute_command() -> str:
    """How this user runs envroute (``.venv/bin/envroute`` when not activated)."""
    program = sys.argv[0] if sys.argv and os.path.basename(sys.argv[0]) == "envroute" else ""
    return shlex.quote(program) if program else "envroute"


def run_demo(host: str = "127.0.0.1", port: int = 8080) -> int:
    from werkzeug.serving import make_server

    with tempfile.TemporaryDirectory(prefix="envroute-demo-") as scratch:
        production_port, dedicated_port = _free_port(), _free_port()
        production = _start_production(production_port)
        dedicated = _start_production(dedicated_port, "--dedicated")
        try:
            config = _config(Path(scratch), production_port, dedicated_port)
            router = EnvRouter.from_config(config)
            managers = Managers.of_router(router, "envroute demo")
            managers.customers.create("acme", name="ACME Corp")
            test_key = managers.keys.create("sandbox", customer_id="acme", name="demo test")
            live_key = managers.keys.create("production", customer_id="acme",
                                            name="demo live")
            try:
                server = make_server(host, port, router, threaded=True)
            except OSError as exc:
                raise EnvrouteError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                                    "pass --port") from None
            url = f"http://{host}:{server.server_port}"
            move = (f"{_envroute_command()} --config {shlex.quote(str(config))} customers "
                    f"update acme --meta backend={DEDICATED}")
            _print_banner(url, production_port, dedicated_port, test_key.secret,
                          live_key.secret, move)
            # The gateway already writes each access line to stderr ([logging] access);
            # a root handler as well printed every line twice.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
            try:
                server.serve_forever()  # returns on Ctrl-C: werkzeug catches the interrupt
            except KeyboardInterrupt:
                pass
            finally:
                print("\nenvroute demo: stopped.", flush=True)
                signal.signal(signal.SIGTERM, previous)
                server.server_close()
                router.store.close()
        finally:
            for process in (production, dedicated):
                process.terminate()
                process.wait(10)
    return 0


def _print_banner(url: str, production_port: int, dedicated_port: int, test_key: str,
                  live_key: str, move: str) -> None:
    print(f"""envroute demo: gateway on {url}

  sandbox keys    -> the sandbox backend, in this process (mock data)
  live keys       -> the shared production backend, http://127.0.0.1:{production_port}
                     (its own process, reached through envroute's streaming proxy)
                     or the customer's own backend when its metadata names one:
                     {DEDICATED}, http://127.0.0.1:{dedicated_port}

The customer acme has two keys, made in a scratch SQLite store (removed when the demo stops):
  test key  {test_key}
  live key  {live_key}

Paste these in another terminal:
  curl -s {url}/v1/charges -H "Authorization: Bearer {test_key}"
  curl -s {url}/v1/charges -u {live_key}:
  curl -s {url}/v1/charges -H "X-API-Key: sk_test_not_a_real_key"
  curl -s {url}/v1/charges

Move acme to its dedicated backend (same keys, no restart; within about a second):
  {move}
then send the live key's curl again: "served_by" says "production, dedicated to acme".

Ctrl-C stops the demo.""", flush=True)
