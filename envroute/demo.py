"""``envroute demo``: a working gateway in one command, with no config at all.

It builds everything in a scratch directory that is removed on exit: a SQLite key store,
a sandbox backend serving mock data (in-process), a production backend running as its own
process on a free local port (reached through the streaming proxy, as a real upstream
would be), one test key and one live key. Then it prints curl lines that work as pasted,
and serves until Ctrl-C.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from .errors import EnvrouteError
from .gateway import EnvRouter
from .lifecycle import KeyManager


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_production(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "envroute.demo_apps", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def run_demo(host: str = "127.0.0.1", port: int = 8080) -> int:
    from werkzeug.serving import make_server

    from .demo_apps import sandbox_app

    with tempfile.TemporaryDirectory(prefix="envroute-demo-") as scratch:
        production_port = _free_port()
        production = _start_production(production_port)
        try:
            config = {
                "secret": secrets.token_urlsafe(32),
                "store": {"url": f"sqlite:///{Path(scratch) / 'demo.db'}"},
                "backends": {
                    "sandbox": {"app": sandbox_app},
                    "production": {"url": f"http://127.0.0.1:{production_port}",
                                   "timeout": "10s"},
                },
                "routes": [
                    {"name": "sandbox keys", "when": {"environment": "sandbox"},
                     "backend": "sandbox"},
                    {"name": "live keys", "when": {"environment": "production"},
                     "backend": "production"},
                ],
            }
            router = EnvRouter.from_config(config)
            manager = KeyManager(router.store, router.settings)
            test_key = manager.create("sandbox", metadata={"customer": "demo"}, name="demo test")
            live_key = manager.create("production", metadata={"customer": "demo"},
                                      name="demo live")
            try:
                server = make_server(host, port, router, threaded=True)
            except OSError as exc:
                raise EnvrouteError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                                    "pass --port") from None
            url = f"http://{host}:{server.server_port}"
            _print_banner(url, production_port, test_key.secret, live_key.secret)
            logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                format="%(name)s %(message)s")
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
            production.terminate()
            production.wait(10)
    return 0


def _print_banner(url: str, production_port: int, test_key: str, live_key: str) -> None:
    print(f"""envroute demo: gateway on {url}

  sandbox keys    -> the sandbox backend, in this process (mock data)
  live keys       -> the production backend, http://127.0.0.1:{production_port}
                     (its own process, reached through envroute's streaming proxy)

Two keys were made in a scratch SQLite store (removed when the demo stops):
  test key  {test_key}
  live key  {live_key}

Paste these in another terminal:
  curl -s {url}/v1/charges -H "Authorization: Bearer {test_key}"
  curl -s {url}/v1/charges -u {live_key}:
  curl -s {url}/v1/charges -H "X-API-Key: sk_test_not_a_real_key"
  curl -s {url}/v1/charges

Ctrl-C stops the demo.""", flush=True)
