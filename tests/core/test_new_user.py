"""Issue 12 as a new user meets it: the README quickstart in a fresh folder, driven only through
the console script and a real gunicorn (subprocesses, no PYTHONPATH, no in-process shortcuts).

Each case is one thing a user hit on 0.1.0: the failure must be ONE line that says what is
wrong and how to fix it, and a secret pasted where an id belongs is never printed back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import BIN, free_port, gunicorn_command, stop, wait_for_port
from tests.support.services import require_postgres

pytestmark = pytest.mark.slow

SECRET = "a-first-secret-0123456789-abcdefghijklmnop"
OTHER_SECRET = "a-second-secret-0123456789-abcdefghijklmno"

# The README quickstart's files, word for word where it matters (relative SQLite path,
# an app import string that only resolves with the current directory on the import path).
QUICKSTART = """
secret = "${ENVROUTE_SECRET}"
[store]
url = "sqlite:///envroute.db"
[backends.sandbox]
app = "myproject.sandbox:app"
[[routes]]
when = {environment = "sandbox"}
backend = "sandbox"
[[routes]]
when = {environment = "production"}
backend = "app"
"""

APP = """
def create_app():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the real app"]
    return app
"""

SANDBOX = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"mock data"]
"""

# The standalone gateway (no wrapped app), for envroute.wsgi:app under gunicorn.
GATEWAY = QUICKSTART.replace('backend = "app"', 'backend = "sandbox"')


def run(cwd: Path, *args: str, secret: str = SECRET,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ENVROUTE_CONFIG")}
    env["ENVROUTE_SECRET"] = secret
    return subprocess.run([str(BIN / "envroute"), *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's single stderr line (asserting there is exactly one, no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "__init__.py").write_text(APP)
    (tmp_path / "myproject" / "sandbox.py").write_text(SANDBOX)
    (tmp_path / "envroute.toml").write_text(QUICKSTART)
    return tmp_path


def create_key(project: Path, environment: str = "production") -> tuple[str, str]:
    """(id, secret) of a new key, made as the README makes it."""
    result = run(project, "keys", "create", "--environment", environment, "--meta",
                 "customer=acme", "--json")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    return made["id"], made["key"]


def test_the_quickstarts_explain_and_check_work_without_pythonpath(project: Path) -> None:
    _, secret = create_key(project)
    check = run(project, "check", "--app", "myproject:create_app()")
    assert check.returncode == 0, check.stderr
    explain = run(project, "explain", "--app", "myproject:create_app()", secret, "GET",
                  "/v1/charges")
    assert explain.returncode == 0, explain.stderr
    assert "backend   app (the wrapped app)" in explain.stdout
    assert secret not in explain.stdout + explain.stderr


@pytest.mark.parametrize("app", [
    pytest.param("myproject:nothing_here", id="missing-attribute"),
    pytest.param("nosuchpackage:app", id="missing-module"),
])
def test_an_app_that_does_not_import_is_one_line(project: Path, app: str) -> None:
    assert app in one_line(run(project, "check", "--app", app))


@pytest.mark.parametrize("command", [
    pytest.param(["check"], id="check"),
    pytest.param(["keys", "list"], id="keys-list"),
    pytest.param(["keys", "create", "--environment", "sandbox"], id="keys-create"),
    pytest.param(["keys", "show", "key_whatever"], id="keys-show"),
    pytest.param(["customers", "list"], id="customers-list"),
    pytest.param(["explain", "sk_test_x", "GET", "/"], id="explain"),
])
def test_a_changed_secret_is_one_line_with_the_count_and_the_fix(project: Path,
                                                                 command: list[str]) -> None:
    create_key(project)
    create_key(project, "sandbox")
    line = one_line(run(project, *command, "--app", "myproject:create_app()", secret=OTHER_SECRET)
                    if command[0] in ("check", "explain") else
                    run(project, *command, secret=OTHER_SECRET))
    assert "2 key secrets" in line and "previous_secrets" in line, line


def test_a_rotation_through_previous_secrets_keeps_the_keys(project: Path) -> None:
    key_id, _ = create_key(project)
    config = project / "envroute.toml"
    config.write_text(QUICKSTART.replace(
        'secret = "${ENVROUTE_SECRET}"',
        f'secret = "${{ENVROUTE_SECRET}}"\nprevious_secrets = ["{SECRET}"]'))
    listed = run(project, "keys", "list", secret=OTHER_SECRET)
    assert listed.returncode == 0 and key_id in listed.stdout, listed.stderr
    check = run(project, "check", "--app", "myproject:create_app()", secret=OTHER_SECRET)
    assert check.returncode == 0, check.stderr
    assert "previous" in check.stdout + check.stderr


def test_a_relative_sqlite_path_is_the_config_files_from_any_directory(project: Path) -> None:
    key_id, _ = create_key(project)
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    listed = run(elsewhere, "keys", "list", "--config", str(project / "envroute.toml"))
    assert listed.returncode == 0 and key_id in listed.stdout, listed.stderr
    assert not (elsewhere / "envroute.db").exists()


def test_a_missing_store_folder_is_named(project: Path) -> None:
    (project / "envroute.toml").write_text(QUICKSTART.replace("sqlite:///envroute.db",
                                                              "sqlite:///nowhere/keys.db"))
    assert "nowhere" in one_line(run(project, "keys", "list"))


@pytest.mark.parametrize("command", [
    pytest.param(["keys", "show"], id="show"),
    pytest.param(["keys", "revoke"], id="revoke"),
    pytest.param(["keys", "roll"], id="roll"),
    pytest.param(["keys", "disable"], id="disable"),
    pytest.param(["keys", "enable"], id="enable"),
    pytest.param(["keys", "usage"], id="usage"),
    pytest.param(["customers", "show"], id="customers-show"),
])
def test_a_secret_pasted_as_an_id_is_never_printed_back(project: Path,
                                                        command: list[str]) -> None:
    _, secret = create_key(project)
    result = run(project, *command, secret)
    assert result.returncode != 0
    assert secret not in result.stdout + result.stderr
    assert secret[-4:] in one_line(result)


def test_a_leaked_secret_revokes_its_key_from_stdin_without_echoing_it(project: Path) -> None:
    key_id, secret = create_key(project)
    result = run(project, "keys", "revoke", "--secret", "-", stdin=secret + "\n")
    assert result.returncode == 0, result.stderr
    assert key_id in result.stdout and secret not in result.stdout + result.stderr
    shown = run(project, "keys", "show", key_id)
    assert "revoked" in shown.stdout


@pytest.mark.parametrize("duration", ["0s", "0", "0m"])
def test_a_zero_expiry_is_refused(project: Path, duration: str) -> None:
    result = run(project, "keys", "create", "--environment", "sandbox",
                 "--expires-in", duration)
    assert result.returncode == 2 and "not longer than 0s" in result.stderr


def gunicorn_boot(project: Path, *extra: str, workers: int = 1,
                  secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ENVROUTE_CONFIG="envroute.toml", ENVROUTE_SECRET=secret)
    command = gunicorn_command("envroute.wsgi:app", free_port(), workers=workers)
    return subprocess.run([*command, "--log-level", "info", *extra], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def envroute_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The boot output's lines that are not gunicorn's own timestamped log lines."""
    return [line for line in (result.stdout + result.stderr).splitlines()
            if not line.startswith("[")]


UNKNOWN_KEY = GATEWAY.replace("[[routes]]", "[auth]\ncolour = 1\n[[routes]]", 1)
TYPO = GATEWAY.replace('environment = "sandbox"', 'environment = "sandbx"')


@pytest.mark.parametrize(("config", "secret", "workers", "extra", "says"), [
    pytest.param(UNKNOWN_KEY, SECRET, 1, (), "auth.colour: unknown key", id="one-worker"),
    pytest.param(UNKNOWN_KEY, SECRET, 3, (), "auth.colour: unknown key", id="three-workers"),
    pytest.param(UNKNOWN_KEY, SECRET, 2, ("--preload",), "auth.colour: unknown key",
                 id="preload"),
    pytest.param(TYPO, SECRET, 3, (), "sandbx", id="unconfigured-environment"),
    pytest.param(GATEWAY, OTHER_SECRET, 3, (), "1 key secret", id="secret-changed"),
])
def test_gunicorn_boot_with_a_broken_config_is_one_line(project: Path, config: str,
                                                        secret: str, workers: int,
                                                        extra: tuple[str, ...],
                                                        says: str) -> None:
    create_key(project)
    (project / "envroute.toml").write_text(config)
    result = gunicorn_boot(project, *extra, workers=workers, secret=secret)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # gunicorn's "App failed to load": the master stops
    assert "Traceback" not in output, output
    lines = envroute_lines(result)
    assert len(lines) == 1 and lines[0].startswith("envroute: error: "), output
    assert says in lines[0], output


def test_serve_on_a_busy_port_is_one_line_before_serving_on(project: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run(project, "serve", "--app", "myproject:create_app()", "--host",
                     "127.0.0.1", "--port", str(port))
    line = one_line(result)
    assert f"127.0.0.1:{port}" in line and "serving on" not in result.stdout, line


def refusing_postgres(kind: str) -> tuple[str, str]:
    """(store URL, the words the one line must hold) for a PostgreSQL that refuses."""
    base = require_postgres().rsplit("/", 1)[0]
    host = base.split("://", 1)[1].rsplit("@", 1)[-1]
    if kind == "database":
        return f"{base}/envroute_no_such_database", 'database "envroute_no_such_database"'
    if kind == "user":
        return f"postgresql://envroute_no_such_role@{host}/test", 'role "envroute_no_such_role"'
    return f"postgresql://127.0.0.1:{free_port()}/test", "refused"


@pytest.mark.parametrize("kind", ["database", "user", "refused"])
@pytest.mark.parametrize("command", [["check"], ["keys", "list"], ["customers", "list"]])
def test_a_postgresql_that_refuses_is_one_line_with_the_real_cause(
        project: Path, kind: str, command: list[str]) -> None:
    url, says = refusing_postgres(kind)
    args = [*command, "--store", url]
    if command == ["check"]:
        args += ["--app", "myproject:create_app()"]
    line = one_line(run(project, *args))
    assert says in line and "couldn't get a connection" not in line, line


def test_gunicorn_on_a_refusing_postgresql_says_why_without_chatter(project: Path) -> None:
    """A store that is down is not a boot failure (requests get 503 until it answers), but
    each worker says so with the real cause, and its change listener's retries are one line
    per outage, not one per back-off step."""
    url, says = refusing_postgres("database")
    (project / "envroute.toml").write_text(GATEWAY.replace("sqlite:///envroute.db", url))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ENVROUTE_CONFIG="envroute.toml", ENVROUTE_SECRET=SECRET)
    log = project / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(gunicorn_command("envroute.wsgi:app", port, workers=1),
                                   cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_for_port(port, process, timeout=60)
            for _ in range(5):
                answer = requests.get(f"http://127.0.0.1:{port}/v1/charges", timeout=30,
                                      headers={"Authorization": "Bearer sk_test_x"})
                assert answer.status_code in (401, 503), answer.text
        finally:
            stop(process)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output and "couldn't get a connection" not in output, output
    assert says in output, output
    assert output.count("LISTEN envroute_changes lost") <= 1, output


def test_a_refusing_listener_warns_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """The change listener retries with back-off; only the first failure is a warning."""
    from envroute.stores.pglisten import Listener

    caplog.set_level(logging.DEBUG, logger="envroute")
    listener = Listener(f"postgresql://127.0.0.1:{free_port()}/test", "envroute_changes",
                        lambda change: None)
    listener.start()
    try:
        deadline = time.monotonic() + 60
        while len([r for r in caplog.records if "still lost" in r.getMessage()]) < 2:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    finally:
        listener.stop()
    lost = [r for r in caplog.records if "LISTEN" in r.getMessage()
            and r.levelno >= logging.WARNING]
    assert len(lost) == 1 and "refused" in lost[0].getMessage(), caplog.text
