"""§10's mirrors: ``flask envroute …`` and ``manage.py envroute_keys|envroute_customers|
envroute_backends`` take the CLI's flags and answer with its ``--json`` fields and exit
statuses. One table of steps, run through each front end against a SQLite store of its own
(``--store``), so a flag or field that one front end lacks fails here by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envroute.stores.sqlite import SQLiteStore
from tests.support.apps import SECRET

from .conftest import ENVROUTE
from .test_cli import CREATED, CUSTOMER, RECORD

ROOT = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = {
    "secret": SECRET,
    "routes": [{"when": {"environment": ["sandbox", "production"]}, "backend": "app"}],
}
TOML = (f'secret = "{SECRET}"\n[[routes]]\n'
        'when = {environment = ["sandbox", "production"]}\nbackend = "app"\n')

#: One front end: (group, args) -> (exit status, stdout).
Runner = Callable[[str, list[str]], tuple[int, str]]


def cli_runner(tmp_path: Path, store: str) -> Runner:
    (tmp_path / "envroute.toml").write_text(TOML)

    def run(group: str, args: list[str]) -> tuple[int, str]:
        result = subprocess.run([ENVROUTE, "--config", "envroute.toml", "--store", store,
                                 group, *args], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        return result.returncode, result.stdout
    return run


def flask_runner(tmp_path: Path, store: str) -> Runner:
    from flask import Flask
    from flask_envroute import EnvRoute

    app = Flask(__name__)
    app.config["ENVROUTE"] = {**CONFIG, "store": {"url": store}}
    EnvRoute(app)

    def run(group: str, args: list[str]) -> tuple[int, str]:
        result = app.test_cli_runner().invoke(args=["envroute", group, *args])
        return result.exit_code, result.stdout
    return run


def django_runner(tmp_path: Path, store: str) -> Runner:
    env = {**os.environ, "EXAMPLE_DJANGO_DB": str(tmp_path / "dj.sqlite3"),
           "EXAMPLE_DJANGO_SANDBOX_DB": str(tmp_path / "sandbox.sqlite3")}

    def run(group: str, args: list[str]) -> tuple[int, str]:
        action, *rest = args
        result = subprocess.run([sys.executable, "manage.py", f"envroute_{group}", action,
                                 "--store", store, *rest],
                                cwd=ROOT / "example_django", env=env,
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout
    return run


FRONT_ENDS = [
    pytest.param(cli_runner, id="envroute"),
    pytest.param(flask_runner, id="flask-envroute"),
    pytest.param(django_runner, id="manage.py"),
]

#: (group, args, exit status, fields the --json answer holds, or None).
STEPS: list[tuple[str, list[str], int, set[str] | None]] = [
    ("customers", ["create", "acme", "--name", "Acme", "--meta", "tier=pro", "--json"], 0,
     CUSTOMER),
    ("customers", ["create", "acme"], 1, None),
    ("keys", ["create", "--environment", "sandbox", "--customer", "acme", "--meta", "a=b",
              "--name", "n", "--expires-in", "30d", "--actor", "ci", "--json"], 0, CREATED),
    ("keys", ["create", "--environment", "sandbox", "--customer", "nope"], 1, None),
    ("keys", ["create"], 2, None),
    ("keys", ["list", "--environment", "sandbox", "--customer", "acme", "--status",
              "active", "--json"], 0, RECORD),
    ("customers", ["update", "acme", "--meta", "x=1", "--unset-meta", "tier", "--name",
                   "A", "--json"], 0, CUSTOMER),
    ("customers", ["list", "--json"], 0, CUSTOMER),
    ("customers", ["disable", "acme"], 0, None),
    ("customers", ["enable", "acme"], 0, None),
    ("customers", ["usage", "acme", "--days", "30", "--json"], 0, None),
    ("keys", ["expiring", "--within", "60d", "--json"], 0, None),
    ("backends", ["add", "dedicated-1", "--url", "http://127.0.0.1:9", "--timeout", "5s",
                  "--connect-timeout", "1s", "--strip-prefix", "/v1", "--pool-size", "2"],
     0, None),
    ("backends", ["add", "bad", "--url", "ftp://x"], 1, None),
    ("backends", ["update", "dedicated-1", "--timeout", "9s"], 0, None),
    ("backends", ["show", "dedicated-1", "--json"], 0, {"name", "url"}),
    ("backends", ["list", "--json"], 0, {"name", "url"}),
    ("backends", ["remove", "dedicated-1"], 0, None),
    ("backends", ["remove", "dedicated-1"], 1, None),
]


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_mirrors_take_the_clis_flags(tmp_path: Path,
                                     front_end: Callable[[Path, str], Runner]) -> None:
    run = front_end(tmp_path, f"sqlite:///{tmp_path / 'keys.db'}")
    for group, args, status, fields in STEPS:
        code, out = run(group, args)
        assert code == status, (group, args, out)
        if fields is not None:
            answer = json.loads(out)
            for item in answer if isinstance(answer, list) else [answer]:
                assert set(item) >= fields, (group, args, sorted(item))


class _BrokenStore(SQLiteStore):
    """A store whose listing fails with something that is not envroute's own error."""

    def list_keys(self) -> Any:
        raise RuntimeError("disk\nsaid no")


def test_flask_mirror_fails_in_one_line_whatever_the_cause(tmp_path: Path) -> None:
    from flask import Flask
    from flask_envroute import EnvRoute, get_state

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    app = Flask(__name__)
    app.config["ENVROUTE"] = {**CONFIG, "store": {"url": url}}
    EnvRoute(app, store=_BrokenStore(url))
    try:
        result = app.test_cli_runner().invoke(args=["envroute", "keys", "list"])
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [
            "flask envroute: error: RuntimeError: disk said no "
            "(ENVROUTE_DEBUG=1 shows the traceback)"]
    finally:
        get_state(app).close()


#: A well-formed secret, pasted as the action: never echoed, even by argparse.
PASTED = "sk_live_CCQeQzD66t0IG329U0pRFifCedrQFXjw2Yb3PX"


@pytest.mark.parametrize("args", [
    pytest.param(["keys", "create"], id="missing-flag"),
    pytest.param(["keys", PASTED], id="secret-as-action"),
])
def test_a_usage_error_is_one_line_in_every_front_end(tmp_path: Path, args: list[str]
                                                      ) -> None:
    """§10: a failure is one line on stderr, a usage error (exit 2) included."""
    from flask import Flask
    from flask_envroute import EnvRoute

    store = f"sqlite:///{tmp_path / 'keys.db'}"
    env = {**os.environ, "EXAMPLE_DJANGO_DB": str(tmp_path / "dj.sqlite3"),
           "EXAMPLE_DJANGO_SANDBOX_DB": str(tmp_path / "sandbox.sqlite3")}
    django = subprocess.run([sys.executable, "manage.py", f"envroute_{args[0]}", *args[1:]],
                            cwd=ROOT / "example_django", env=env, capture_output=True,
                            text=True, timeout=60)
    app = Flask(__name__)
    app.config["ENVROUTE"] = {**CONFIG, "store": {"url": store}}
    EnvRoute(app)
    flask = app.test_cli_runner().invoke(args=["envroute", *args])
    (tmp_path / "envroute.toml").write_text("")
    cli = subprocess.run([ENVROUTE, "--store", store, *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ENVROUTE_CONFIG": str(ROOT / "nowhere")})
    for name, status, stderr in (("manage.py", django.returncode, django.stderr),
                                 ("flask", flask.exit_code, flask.stderr),
                                 ("envroute", cli.returncode, cli.stderr)):
        assert status == 2, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1, (name, stderr)
        assert PASTED not in stderr and "--help" in stderr, (name, stderr)


@pytest.mark.parametrize("args", [
    pytest.param(["backends", "add", "b1", "--url", PASTED], id="url"),
    pytest.param(["customers", "create", "acme", "--actor", PASTED], id="actor"),
])
def test_a_secret_pasted_as_a_value_is_never_repeated(tmp_path: Path, args: list[str]
                                                      ) -> None:
    """§3: no error message shows a secret, whatever flag it was pasted into (exit 1)."""
    from flask import Flask
    from flask_envroute import EnvRoute

    store = f"sqlite:///{tmp_path / 'keys.db'}"
    env = {**os.environ, "EXAMPLE_DJANGO_DB": str(tmp_path / "dj.sqlite3"),
           "EXAMPLE_DJANGO_SANDBOX_DB": str(tmp_path / "sandbox.sqlite3")}
    django = subprocess.run([sys.executable, "manage.py", f"envroute_{args[0]}", *args[1:],
                             "--store", store], cwd=ROOT / "example_django", env=env,
                            capture_output=True, text=True, timeout=60)
    app = Flask(__name__)
    app.config["ENVROUTE"] = {**CONFIG, "store": {"url": store}}
    EnvRoute(app)
    flask = app.test_cli_runner().invoke(args=["envroute", *args, "--store", store])
    for name, status, output in (("manage.py", django.returncode, django.stdout + django.stderr),
                                 ("flask", flask.exit_code, flask.stdout + flask.stderr)):
        assert status == 1, (name, output)
        assert PASTED not in output and PASTED[-4:] in output, (name, output)
    assert SQLiteStore(store).list_customers() == []


def test_a_store_in_a_missing_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    """§9: a directory that does not exist is one clear line naming it, for ``--store``
    in every front end (manage.py tried to open the file and said only that it could not)."""
    from flask import Flask
    from flask_envroute import EnvRoute

    missing = tmp_path / "nowhere"
    store = f"sqlite:///{missing / 'keys.db'}"
    env = {**os.environ, "EXAMPLE_DJANGO_DB": str(tmp_path / "dj.sqlite3"),
           "EXAMPLE_DJANGO_SANDBOX_DB": str(tmp_path / "sandbox.sqlite3")}
    django = subprocess.run([sys.executable, "manage.py", "envroute_keys", "list",
                             "--store", store], cwd=ROOT / "example_django", env=env,
                            capture_output=True, text=True, timeout=60)
    app = Flask(__name__)
    app.config["ENVROUTE"] = {**CONFIG, "store": {"url": f"sqlite:///{tmp_path / 'k.db'}"}}
    EnvRoute(app)
    flask = app.test_cli_runner().invoke(args=["envroute", "keys", "list", "--store", store])
    (tmp_path / "envroute.toml").write_text(TOML)
    cli = subprocess.run([ENVROUTE, "--store", store, "keys", "list"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    for name, status, stderr in (("manage.py", django.returncode, django.stderr),
                                 ("flask", flask.exit_code, flask.stderr),
                                 ("envroute", cli.returncode, cli.stderr)):
        assert status == 1, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1, (name, stderr)
        assert f"{missing} does not exist" in stderr, (name, stderr)
