"""envroute.testing: real keys for users' own tests, and the ``envroute_key`` fixture."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import ConfigError, EnvRouter
from envroute.stores.base import Change
from envroute.testing import KeyFactory, make_key
from tests.conftest import SECRET, text_app

TOML = f'''secret = "{SECRET}"
[store]
url = "sqlite:///keys.db"
[[routes]]
when = {{}}
backend = "app"
'''


@pytest.fixture(autouse=True)
def no_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    """Django may be configured by an earlier test of this process: look past it, to test
    the other ways of finding the configuration (Django's has its own test, through the
    Django example's own tests in tests/integrations/test_examples.py)."""
    import envroute.testing

    monkeypatch.setattr(envroute.testing, "_from_django", lambda: None)
    monkeypatch.setattr(envroute.testing, "_from_flask", lambda: None)


def status(router: EnvRouter, secret: str) -> int:
    return Client(router).get("/", headers={"Authorization": f"Bearer {secret}"}).status_code


def identity_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    identity = environ["envroute.identity"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps([identity.environment, dict(identity.metadata),
                        identity.customer_id]).encode()]


@pytest.mark.parametrize(("environment", "metadata", "prefix"), [
    pytest.param("sandbox", None, "sk_test_", id="sandbox"),
    pytest.param("production", {"tier": "gold"}, "sk_live_", id="production-with-metadata"),
])
def test_make_key_with_config(base_config: dict[str, Any], environment: str,
                              metadata: dict[str, str] | None, prefix: str) -> None:
    secret = make_key(environment, metadata=metadata, config=base_config)
    assert secret.startswith(prefix)
    gateway = EnvRouter(identity_app, {**base_config, "routes": [{"when": {},
                                                                  "backend": "app"}]})
    try:
        response = Client(gateway).get("/", headers={"Authorization": f"Bearer {secret}"})
    finally:
        gateway.store.close()
    assert response.json == [environment, metadata or {}, None]


def test_make_key_for_a_customer(base_config: dict[str, Any]) -> None:
    from envroute.customers import CustomerManager
    from envroute.testing import key_manager

    manager, close = key_manager(base_config)
    try:
        CustomerManager(manager.store, manager.settings).create("acme", metadata={"tier": "gold"})
    finally:
        close()
    secret = make_key("production", customer="acme", config=base_config)
    gateway = EnvRouter(identity_app, {**base_config, "routes": [{"when": {},
                                                                  "backend": "app"}]})
    try:
        response = Client(gateway).get("/", headers={"Authorization": f"Bearer {secret}"})
    finally:
        gateway.store.close()
    assert response.json == ["production", {"tier": "gold"}, "acme"]


def test_make_key_finds_the_config_as_the_cli_does(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "envroute.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENVROUTE_CONFIG", raising=False)
    secret = make_key("sandbox")
    gateway = EnvRouter(text_app("app"), tmp_path / "envroute.toml")
    try:
        assert status(gateway, secret) == 200
    finally:
        gateway.store.close()


def test_make_key_without_any_config_says_how(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENVROUTE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="pass config="):
        make_key()


def test_the_factory_revokes_its_keys(base_config: dict[str, Any], router: EnvRouter) -> None:
    factory = KeyFactory()
    secrets = [factory("sandbox", config=base_config), factory("production", config=base_config)]
    assert [status(router, s) for s in secrets] == [200, 200]
    factory.revoke_all()
    router.authenticator.on_change(Change("all"))  # as a store notification would
    assert [status(router, s) for s in secrets] == [401] * 2


def test_the_pytest_plugin(tmp_path: Path) -> None:
    """A user's project: ``-p envroute.testing`` and a test that uses ``envroute_key``."""
    (tmp_path / "envroute.toml").write_text(TOML)
    (tmp_path / "test_user.py").write_text(textwrap.dedent('''
        from werkzeug.test import Client
        from envroute import EnvRouter

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [environ["envroute.identity"].environment.encode()]

        def test_view(envroute_key):
            key = envroute_key("production", metadata={"tier": "gold"})
            gateway = EnvRouter(app, "envroute.toml")
            response = Client(gateway).get("/", headers={"Authorization": f"Bearer {key}"})
            assert response.data == b"production"
            open("made.txt", "w").write(key)
    '''))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "envroute.testing",
                             "-p", "no:cacheprovider", "test_user.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False,
                            env={"PATH": "/usr/bin:/bin", "ENVROUTE_CONFIG": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    secret = (tmp_path / "made.txt").read_text()
    gateway = EnvRouter(text_app("app"), tmp_path / "envroute.toml")
    try:
        assert status(gateway, secret) == 401  # revoked at teardown
    finally:
        gateway.store.close()
