"""The standalone gateway under a real gunicorn: sync and gthread workers, real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.apps import SECRET
from tests.support.processes import BIN, free_port, gunicorn_command, running

pytestmark = pytest.mark.slow

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
    with running(command, port=port, env=env, cwd=project):
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
        assert refused.json()["code"] == "missing_credentials"
        assert refused.json()["request_id"] == refused.headers["Request-Id"]

        envroute(project, "keys", "revoke", test_key["id"])
        deadline = time.monotonic() + 5
        while True:  # every worker must honour it within cache_ttl (1 s here)
            codes = {fetch(test_key["key"]).status_code for _ in range(10)}
            if codes == {401}:
                break
            assert time.monotonic() < deadline, codes
            time.sleep(0.2)
        assert fetch(test_key["key"]).json()["code"] == "revoked_key"


def test_broken_config_stops_gunicorn_at_start_up(project: Path) -> None:
    (project / "envroute.toml").write_text(CONFIG.replace("[auth]", "[auth]\ncolour = 1"))
    port = free_port()
    result = subprocess.run(gunicorn_command("envroute.wsgi:app", port, workers=1),
                            cwd=project, env={**os.environ, "ENVROUTE_CONFIG": "envroute.toml"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "envroute.toml: auth.colour: unknown key" in result.stderr + result.stdout
