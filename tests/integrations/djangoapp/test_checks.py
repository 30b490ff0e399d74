"""``manage.py check``: one case per check id, and a clean bill for valid settings."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Error, run_checks
from django.core.checks import Warning as CheckWarning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django_envroute.checks import TAG, check_settings

MIDDLEWARE = "django_envroute.middleware.EnvRouteMiddleware"


def valid() -> dict[str, Any]:
    return dict(settings.ENVROUTE)


CASES = [
    pytest.param({"ENVROUTE": None}, "envroute.E001", "settings.ENVROUTE is missing",
                 id="E001-missing"),
    pytest.param({"ENVROUTE": "envroute.toml"}, "envroute.E001", "is a str",
                 id="E001-not-a-dict"),
    pytest.param({"ENVROUTE": {**valid(), "secret": "short"}}, "envroute.E002",
                 "settings.ENVROUTE['secret']: must be at least 32 characters",
                 id="E002-short-secret"),
    pytest.param({"ENVROUTE": {**valid(), "routes": [{"when": {}, "backend": "nope"}]}},
                 "envroute.E002", "settings.ENVROUTE['routes'][0]['backend']: backend 'nope'",
                 id="E002-undefined-backend"),
    pytest.param({"ENVROUTE": {**valid(), "colour": "blue"}}, "envroute.E002",
                 "settings.ENVROUTE['colour']: unknown key", id="E002-unknown-key"),
    pytest.param({"MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware"]},
                 "envroute.E003", f"{MIDDLEWARE!r} is not in MIDDLEWARE", id="E003"),
    pytest.param({"ENVROUTE_EXEMPT_PATHS": "/admin/"}, "envroute.E004",
                 "ENVROUTE_EXEMPT_PATHS must be a list", id="E004-a-string"),
    pytest.param({"ENVROUTE_EXEMPT_PATHS": ["admin/"]}, "envroute.E004",
                 "starting with '/'", id="E004-relative"),
    pytest.param({"ENVROUTE": {**valid(), "store": {"url": "django://replica"}}},
                 "envroute.E005", "names the database 'replica', which is not in DATABASES",
                 id="E005"),
    pytest.param({"ENVROUTE": {**valid(), "store": {"url": "mongodb://db/keys"}}},
                 "envroute.E006", "unknown store scheme 'mongodb'", id="E006"),
    pytest.param({"ENVROUTE": {**valid(), "store": {"url": "sqlite:///no/such/dir/k.db"}}},
                 "envroute.E006", "does not exist", id="E006-missing-sqlite-directory"),
    # what start-up would refuse is what check reports (one validation pass, issue 10)
    pytest.param({"ENVROUTE": {**valid(), "scopes": {"r": ["GET /v1/**/x"]}}},
                 "envroute.E002", "settings.ENVROUTE['scopes']['r']: ", id="E002-scope-pattern"),
    pytest.param({"ENVROUTE": {**valid(), "routes": [{"when": {"environment": "live"},
                                                      "backend": "app"}]}},
                 "envroute.E002", "'live' is not a configured environment",
                 id="E002-when-environment"),
    pytest.param({"ENVROUTE": {**valid(), "rate_limits": {"rules": [{"limit": "1/second",
                                                                     "per": ""}]}}},
                 "envroute.E002", "is empty", id="E002-empty-per"),
    pytest.param({"ENVROUTE": {**valid(), "jwt": {"algorithms": ["HS256"], "secret": "x"}}},
                 "envroute.E002", "at least 32 bytes", id="E002-jwt-secret"),
    pytest.param({"ENVROUTE": {**valid(), "backends": {"x": {"url": "http://h:port"}},
                               "routes": [{"when": {}, "backend": "x"}]}},
                 "envroute.E002", "invalid port", id="E002-backend-url"),
    pytest.param({"ENVROUTE": {**valid(), "backends": {"x": {"app": "no_such_mod_x:app"}},
                               "routes": [{"when": {}, "backend": "x"}]}},
                 "envroute.E002", "settings.ENVROUTE['backends']['x']['app']: cannot import "
                 "app 'no_such_mod_x:app': ModuleNotFoundError", id="E002-backend-import"),
]


@pytest.mark.parametrize(("overrides", "check_id", "message"), CASES)
def test_each_check_id(overrides: dict[str, Any], check_id: str, message: str) -> None:
    with override_settings(**overrides):
        errors = check_settings()
    assert [e.id for e in errors] == [check_id]
    assert isinstance(errors[0], Error)
    assert message in errors[0].msg
    assert errors[0].hint


SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "keys.sqlite3"}
ATOMIC = {**SQLITE, "ATOMIC_REQUESTS": True}


@pytest.mark.parametrize(("database", "store", "warned"), [
    pytest.param(ATOMIC, "django://keys", True, id="W022-atomic-deferred"),
    pytest.param({**ATOMIC, "OPTIONS": {"transaction_mode": "DEFERRED"}}, "django://keys",
                 True, id="W022-deferred-said"),
    pytest.param({**ATOMIC, "OPTIONS": {"transaction_mode": "IMMEDIATE"}}, "django://keys",
                 False, id="immediate"),
    pytest.param({**ATOMIC, "OPTIONS": {"transaction_mode": "EXCLUSIVE"}}, "django://keys",
                 False, id="exclusive"),
    pytest.param(SQLITE, "django://keys", False, id="autocommit"),
    pytest.param(ATOMIC, "sqlite:///keys.db", False, id="keys-in-envroutes-own-file"),
    pytest.param({"ENGINE": "django.db.backends.postgresql", "NAME": "keys",
                  "ATOMIC_REQUESTS": True}, "django://keys", False, id="postgresql"),
])
def test_sqlite_with_atomic_requests_needs_immediate_transactions(
        monkeypatch: pytest.MonkeyPatch, database: dict[str, Any], store: str,
        warned: bool) -> None:
    monkeypatch.setitem(settings.DATABASES, "keys", database)
    with override_settings(ENVROUTE={**valid(), "store": {"url": store}}):
        found = check_settings()
    assert [m.id for m in found] == (["envroute.W022"] if warned else [])
    if warned:
        assert isinstance(found[0], CheckWarning)
        assert "DATABASES['keys']" in found[0].msg and "ATOMIC_REQUESTS" in found[0].msg
        assert found[0].hint and '"transaction_mode"] = "IMMEDIATE"' in found[0].hint


def test_valid_settings_pass() -> None:
    assert check_settings() == []
    with override_settings(ENVROUTE={**valid(), "store": {"url": "sqlite:///keys.db"}}):
        assert check_settings() == []


def test_checks_are_registered_and_fail_manage_py_check() -> None:
    with override_settings(ENVROUTE={**valid(), "secret": "short"}):
        assert [e.id for e in run_checks(tags=[TAG])] == ["envroute.E002"]
        with pytest.raises(SystemCheckError, match=r"envroute\.E002"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
    call_command("check", stdout=StringIO())
