"""Django's side of events and ordering: the ``envroute_event`` signal after each change,
and ``envroute.W021`` when a CORS middleware would answer after envroute (a browser's
preflight carries no key, so it would be a 401)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django_envroute.cors import check_cors_order
from django_envroute.signals import envroute_event

from envroute import Event

MIDDLEWARE = "django_envroute.middleware.EnvRouteMiddleware"
CORS = "corsheaders.middleware.CorsMiddleware"


@pytest.mark.parametrize(("middleware", "warned"), [
    pytest.param([MIDDLEWARE, CORS], True, id="W021-cors-after"),
    pytest.param([CORS, MIDDLEWARE], False, id="cors-first"),
    pytest.param([MIDDLEWARE], False, id="no-cors"),
    pytest.param(["myproject.middleware.CORSMiddleware", MIDDLEWARE], False,
                 id="own-cors-first"),
])
def test_a_cors_middleware_after_envroute_is_a_warning(middleware: list[str],
                                                       warned: bool) -> None:
    with override_settings(MIDDLEWARE=[*middleware, *settings.MIDDLEWARE[1:]]):
        messages = check_cors_order()
    assert [m.id for m in messages] == (["envroute.W021"] if warned else [])
    if warned:
        assert "preflight" in messages[0].msg and CORS in messages[0].hint


@pytest.mark.django_db
def test_every_change_sends_envroute_event() -> None:
    received: list[Any] = []

    def receiver(sender: Any, event: Event, **kwargs: Any) -> None:
        received.append((sender, event))

    def failing(sender: Any, event: Event, **kwargs: Any) -> None:
        raise RuntimeError("receiver down")

    envroute_event.connect(receiver)
    envroute_event.connect(failing)
    try:
        call_command("envroute_keys", "create", "--environment", "sandbox", "--json",
                     "--actor", "ops")
    finally:
        envroute_event.disconnect(receiver)
        envroute_event.disconnect(failing)
    assert len(received) == 1
    sender, event = received[0]
    assert sender is Event and event.action == "key.created" and event.actor == "ops"
    assert event.as_dict()["target"] == event.target
