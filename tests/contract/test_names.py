"""§1, §7 and §18's public Python names, called as a user's code calls them."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import envroute
from envroute import ids
from tests.support.apps import SECRET


@pytest.mark.parametrize(("module", "name"), [
    pytest.param("envroute", "EnvRouter", id="EnvRouter"),
    pytest.param("envroute", "verify_signature", id="verify_signature"),
    pytest.param("envroute.ids", "new_id", id="new_id"),
    pytest.param("envroute.ids", "environment_of", id="environment_of"),
    pytest.param("envroute.testing", "make_key", id="make_key"),
    pytest.param("envroute.testing", "envroute_key", id="envroute_key-fixture"),
    pytest.param("flask_envroute", "EnvRoute", id="EnvRoute"),
    pytest.param("flask_envroute.db", "using_environment", id="flask-using_environment"),
    pytest.param("django_envroute.db", "EnvironmentRouter", id="EnvironmentRouter"),
    pytest.param("django_envroute.db", "CrossEnvironmentAccess",
                 id="CrossEnvironmentAccess"),
    pytest.param("django_envroute.db", "using_environment", id="django-using_environment"),
    pytest.param("django_envroute.signals", "envroute_event", id="envroute_event"),
])
def test_public_name_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_flask_session_is_a_module_attribute() -> None:
    source = Path(importlib.import_module("flask_envroute.db").__file__ or "").read_text()
    assert "session" in source
    assert "session" in dir(importlib.import_module("flask_envroute.db"))


@pytest.mark.parametrize(("function", "parameters"), [
    pytest.param("envroute.testing:make_key",
                 [("environment", "sandbox"), ("metadata", None), ("scopes", ()),
                  ("customer", None), ("config", None)], id="make_key"),
    pytest.param("envroute:verify_signature",
                 [("headers", inspect.Parameter.empty),
                  ("signing_secret", inspect.Parameter.empty), ("tolerance", 300)],
                 id="verify_signature"),
])
def test_signature(function: str, parameters: list[tuple[str, object]]) -> None:
    module, name = function.split(":")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    given = [(p.name, p.default) for p in signature.parameters.values()
             if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert given == parameters


def test_init_app_and_constructor() -> None:
    from flask_envroute import EnvRoute

    assert callable(EnvRoute.init_app)
    assert list(inspect.signature(envroute.EnvRouter).parameters)[:2] == ["app", "config"]
    assert callable(envroute.EnvRouter.from_config)


@pytest.mark.parametrize(("owner", "tag", "environment"), [
    pytest.param("sandbox", "test", "sandbox", id="sandbox"),
    pytest.param("production", "live", "production", id="production"),
])
def test_ids(owner: str, tag: str, environment: str) -> None:
    made = ids.new_id("ch", owner)
    prefix, made_tag, random_part = made.split("_")
    assert (prefix, made_tag, len(random_part)) == ("ch", tag, 24)
    assert random_part.isalnum() and random_part.isascii()
    assert ids.environment_of(made) == environment


@pytest.mark.parametrize(("name", "tag"), [
    pytest.param("staging", "staging", id="else-the-name"),
    # An id's parts are split on '_': the name without separators, as the config's default.
    pytest.param("eu_prod", "euprod", id="name-with-separator"),
])
def test_ids_of_other_environments(name: str, tag: str) -> None:
    from envroute.config import parse_settings

    made = ids.new_id("ch", name)
    assert made.split("_")[:2] == ["ch", tag]
    settings = parse_settings({"secret": "s" * 40, "environments": {
        "sandbox": {}, name: {"prefix": "sk_other_"}}})
    assert ids.environment_of(made, settings=settings) == name


def test_environment_of_something_else_is_none() -> None:
    assert ids.environment_of("ch_1") is None


SIGNING = "sign"


def _signed(t: int, key_id: str = "key_1", environment: str = "sandbox",
            customer: str = "acme", metadata: str = '{"tier":"pro"}',
            secret: str = SIGNING) -> list[tuple[str, str]]:
    message = f"{t}\n{key_id}\n{environment}\n{customer}\n{metadata}"
    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    headers = [("Envroute-Key-Id", key_id), ("Envroute-Environment", environment),
               ("Envroute-Metadata", metadata), ("Envroute-Signature", f"t={t},v2={mac}")]
    if customer:
        headers.append(("Envroute-Customer-Id", customer))
    return headers


Headers = list[tuple[str, str]]


#: Each case signs at the moment the test runs (``now``): a time taken when the module was
#: collected went stale (over the 300 s tolerance) when a loaded machine took longer than
#: that to reach these tests in a full run.
@pytest.mark.parametrize(("make", "valid"), [
    pytest.param(lambda now: _signed(now), True, id="valid"),
    pytest.param(lambda now: _signed(now, customer=""), True, id="valid-no-customer"),
    pytest.param(lambda now: _signed(now, secret="other"), False, id="wrong-secret"),
    pytest.param(lambda now: _signed(now - 3600), False, id="stale"),
    pytest.param(lambda now: [h for h in _signed(now) if h[0] != "Envroute-Signature"],
                 False, id="missing"),
    pytest.param(lambda now: [*_signed(now)[:3], ("Envroute-Signature", "garbage")], False,
                 id="malformed"),
    pytest.param(lambda now: [*_signed(now), ("Envroute-Key-Id", "key_2")], False,
                 id="repeated-identity-header"),
    pytest.param(lambda now: [(k, v.replace("v2=", "v1=")) for k, v in _signed(now)],
                 False, id="v1-retired"),
])
def test_verify_signature(make: Callable[[int], Headers], valid: bool) -> None:
    headers = make(int(time.time()))
    assert envroute.verify_signature(headers, "sign") is valid
    assert envroute.verify_signature(dict(headers), "sign") is (
        valid and len(dict(headers)) == len(headers))


def test_envroute_wsgi_app_under_envroute_config(tmp_path: Path) -> None:
    """``ENVROUTE_CONFIG=envroute.toml gunicorn envroute.wsgi:app``: the module's ``app``."""
    (tmp_path / "envroute.toml").write_text(
        f'secret = "{SECRET}"\n[store]\nurl = "sqlite:///keys.db"\n'
        '[health]\npath = "/healthz"\n[logging]\naccess = false\n')
    script = ("import json; from werkzeug.test import Client; from envroute.wsgi import app;"
              "r = Client(app).get('/healthz'); print(json.dumps([r.status_code, r.json]))")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, text=True,
                            capture_output=True, timeout=60,
                            env={**os.environ, "ENVROUTE_CONFIG": "envroute.toml"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [200, {"status": "ok"}]
