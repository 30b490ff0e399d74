"""The standalone gateway under a real gunicorn: sync and gthread workers, real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.apps import SECRET
from tests.support.broken_apps import BEFORE_BODY
from tests.support.processes import BIN, free_port, gunicorn_command, running

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

CONFIG = f"""
secret = "{SECRET}"
[store]
url = "sqlite:///keys.db"
[auth]
cache_ttl = "1s"
[backends.sandbox]
app = "envroute.demo_apps:sandbox_app"
[backends.production]
app = "envroute.demo_apps:production_app"
[[routes]]
when = {{environment = "sandbox"}}
backend = "sandbox"
[[routes]]
when = {{environment = "production"}}
backend = "production"
"""


class Output:
    """Reads a server's output as it comes (so its pipe never fills and blocks it)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._seen = b""
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                with self._changed:
                    self._seen += line
                    self._changed.notify_all()
        except (OSError, ValueError):  # the pipe was closed when the server stopped
            return

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Everything printed so far, once ``text`` is among it."""
        with self._changed:
            found = self._changed.wait_for(lambda: text.encode() in self._seen, timeout)
            seen = self._seen.decode(errors="replace")
        assert found, seen[-2000:]
        return seen


def envroute(cwd: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "envroute"), *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "envroute.toml").write_text(CONFIG)
    return tmp_path


@pytest.mark.parametrize(("worker_class", "threads"), [("sync", 1), ("gthread", 4)])
def test_gateway_serves_under_gunicorn(project: Path, worker_class: str, threads: int) -> None:
    test_key = json.loads(envroute(project, "keys", "create", "-e", "sandbox", "--json"))
    live_key = json.loads(envroute(project, "keys", "create", "-e", "production", "--json"))
    port = free_port()
    command = gunicorn_command("envroute.wsgi:app", port, workers=2, threads=threads,
                               worker_class=worker_class)
    env = {"ENVROUTE_CONFIG": "envroute.toml"}
    url = f"http://127.0.0.1:{port}/v1/charges"
    with running(command, port=port, env=env, cwd=project) as server:
        def fetch(key: str) -> requests.Response:
            return requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(fetch, [test_key["key"], live_key["key"]] * 40))
        for response, expected in zip(answers, [False, True] * 40, strict=True):
            assert response.status_code == 200
            assert response.json()["livemode"] is expected
            assert response.headers["Request-Id"].startswith("req_")
        refused = requests.get(url, timeout=10)
        assert refused.status_code == 401
        # access lines reach gunicorn's stderr with no logging set up ([logging] access)
        output = Output(server).wait_for(f"{refused.headers['Request-Id']} key=-")
        assert "GET /v1/charges 200 code=-" in output
        assert refused.json()["code"] == "missing_credentials"
        assert refused.json()["request_id"] == refused.headers["Request-Id"]

        envroute(project, "keys", "revoke", test_key["id"])
        revoked = time.monotonic()
        while True:
            # Every worker must honour it within cache_ttl (1 s here). Requests are not
            # spread evenly over workers, so a run of refusals from one worker says
            # nothing about the other until its cached verdict expired: only answers
            # after cache_ttl count (0.1 had this race: about 2 runs in 10 failed).
            answers = [fetch(test_key["key"]) for _ in range(20)]
            if time.monotonic() - revoked > 1.2 and {a.status_code for a in answers} == {401}:
                break
            assert time.monotonic() < revoked + 10, [a.status_code for a in answers]
            time.sleep(0.2)
        assert {a.json()["code"] for a in answers} == {"revoked_key"}


def test_broken_config_stops_gunicorn_at_start_up(project: Path) -> None:
    (project / "envroute.toml").write_text(CONFIG.replace("[auth]", "[auth]\ncolour = 1"))
    port = free_port()
    result = subprocess.run(gunicorn_command("envroute.wsgi:app", port, workers=1),
                            cwd=project, env={**os.environ, "ENVROUTE_CONFIG": "envroute.toml"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "envroute.toml: auth.colour: unknown key" in result.stderr + result.stdout


def broken_config(names: list[str]) -> str:
    """Every broken app as a backend, each reached by keys whose ``broken`` names it."""
    backends = "".join(f'[backends.{n}]\napp = "tests.support.broken_apps:{n}"\n'
                       for n in names)
    routes = "".join(f'[[routes]]\nwhen = {{broken = "{n}"}}\nbackend = "{n}"\n'
                     for n in names)
    return f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///keys.db"\n{backends}{routes}'


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_broken_in_process_backends_are_502_never_500(tmp_path: Path,
                                                      worker_class: str) -> None:
    """PEP 3333's error path under a real server: gunicorn answers 500 if the gateway
    calls start_response twice without exc_info; it must never come to that."""
    names = [*BEFORE_BODY, "breaks_midstream"]
    (tmp_path / "envroute.toml").write_text(broken_config(names))
    keys = {name: json.loads(envroute(tmp_path, "keys", "create", "-e", "sandbox", "--meta",
                                      f"broken={name}", "--json"))["key"] for name in names}
    port = free_port()
    command = gunicorn_command("envroute.wsgi:app", port, workers=1, threads=2,
                               worker_class=worker_class)
    env = {"ENVROUTE_CONFIG": "envroute.toml", "PYTHONPATH": str(ROOT)}
    with running(command, port=port, env=env, cwd=tmp_path):
        url = f"http://127.0.0.1:{port}/v1/charges"
        for name in BEFORE_BODY:
            response = requests.get(url, headers={"X-API-Key": keys[name]}, timeout=10)
            assert response.status_code == 502, (name, response.text)
            body = response.json()
            assert body["code"] == "backend_unavailable", name
            assert body["request_id"] == response.headers["Request-Id"]
            assert "hunter2" not in response.text and "Traceback" not in response.text
        with pytest.raises(requests.exceptions.ChunkedEncodingError):  # cut short, never a 500
            cut = requests.get(url, headers={"X-API-Key": keys["breaks_midstream"]},
                               timeout=10)
            assert cut.status_code == 200 and cut.content  # reading the body raises
        ok = requests.get(url, headers={"X-API-Key": keys[BEFORE_BODY[0]]}, timeout=10)
        assert ok.status_code == 502  # the worker still serves after each of them
