"""``manage.py check`` for ``ENVROUTE_DATABASES`` (§18): one case per check id."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from django_envroute.sandbox import check_databases

ROUTER = ["django_envroute.db.EnvironmentRouter"]
ALL = {"sandbox": "sandbox", "production": "default", "staging": "live"}


@pytest.mark.parametrize(("overrides", "check_id", "text"), [
    pytest.param({"ENVROUTE_DATABASES": {**ALL, "sandbox": "nope"}}, "envroute.E018",
                 "ENVROUTE_DATABASES['sandbox'] names the database 'nope'", id="E018"),
    pytest.param({"ENVROUTE_DATABASES": ALL, "DATABASE_ROUTERS": []}, "envroute.E019",
                 "is not in DATABASE_ROUTERS", id="E019"),
    pytest.param({"ENVROUTE_DATABASES": ["sandbox"]}, "envroute.E020",
                 "must be a dict of environment name -> database alias", id="E020-a-list"),
    pytest.param({"ENVROUTE_DATABASES": {"sandbox": 1}}, "envroute.E020",
                 "must be a dict", id="E020-not-an-alias"),
    pytest.param({"ENVROUTE_DATABASES": {"sandbox": "sandbox", "production": "default"}},
                 "envroute.W018", "the environment 'staging' has no database", id="W018"),
])
def test_each_check(overrides: dict[str, Any], check_id: str, text: str) -> None:
    with override_settings(**{"DATABASE_ROUTERS": ROUTER, **overrides}):
        messages = check_databases()
    assert [m.id for m in messages] == [check_id]
    assert text in messages[0].msg


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="unset: the feature is off"),
    pytest.param({"ENVROUTE_DATABASES": ALL, "DATABASE_ROUTERS": ROUTER}, id="complete"),
])
def test_clean_settings_pass(overrides: dict[str, Any]) -> None:
    with override_settings(**overrides):
        assert check_databases() == []
