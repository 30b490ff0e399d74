"""A Django project for the ``django://`` propagation test under gunicorn.

The integration tests' settings and apps, with one database given in
``$CHANGES_TEST_DATABASE`` (JSON: Django database settings of ``default``, where the
``django://`` store keeps the keys), ``cache_ttl`` of an hour (only a change notification
can end a cached verdict within the test) and §13's placement routes: a customer whose
``backend`` metadata names ``dedicated-acme`` goes there, everyone else to ``shared``. Both
backends are in process (:mod:`tests.support.who_apps`) and answer with their own name
and the caller's customer.

Every response carries ``X-Worker-Pid`` (a middleware before envroute's), so a test can
tell which gunicorn worker answered, refusals included.

``gunicorn tests.integrations.django_changes_wsgi:application``;
``python -m tests.integrations.django_changes_wsgi ARGS`` is this project's ``manage.py``;
``… --set-up NAME…`` prepares its database (:func:`set_up`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponseBase

from tests.integrations.djangoapp import settings as base

Handler = Callable[[HttpRequest], HttpResponseBase]
#: this module's name even when it runs as ``__main__`` (the settings import from it)
MODULE = "tests.integrations.django_changes_wsgi"


class WorkerPid:
    """Names the worker process on every response."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response["X-Worker-Pid"] = str(os.getpid())
        return response


if not settings.configured:
    options = {name: getattr(base, name) for name in dir(base)
               if name.isupper() and not name.startswith("_")}
    options.update(
        DATABASES={"default": json.loads(os.environ["CHANGES_TEST_DATABASE"])},
        MIDDLEWARE=[f"{MODULE}.WorkerPid", *base.MIDDLEWARE],
        # a view's failure (Django's 500 page) with its traceback in gunicorn's output
        LOGGING={"version": 1, "disable_existing_loggers": False,
                 "handlers": {"stderr": {"class": "logging.StreamHandler"}},
                 "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}}},
        ENVROUTE={
            "secret": base.ENVROUTE["secret"],
            "auth": {"cache_ttl": "1h"},
            "backends": {"shared": {"app": "tests.support.who_apps:shared"},
                         "dedicated-acme": {"app": "tests.support.who_apps:dedicated_acme"}},
            "routes": [{"when": {}, "backend_from": "backend", "allow": ["dedicated-*"]},
                       {"when": {}, "backend": "shared"}],
        },
    )
    settings.configure(**options)
    django.setup()

application = get_wsgi_application()


def set_up(customers: list[str]) -> dict[str, dict[str, str]]:
    """Migrate, add the admin's superuser (``$DJANGO_SUPERUSER_*``), and one customer with
    a live key for each name: ``{name: {"id": key id, "key": secret}}``."""
    from django.core.management import call_command
    from django_envroute.gateway import get_key_manager, get_router

    from envroute import CustomerManager

    call_command("migrate", verbosity=0)
    call_command("createsuperuser", interactive=False, verbosity=0)
    router = get_router()
    made = {}
    for name in customers:
        CustomerManager(router.store, router.settings).create(name)
        issued = get_key_manager().create("production", customer_id=name)
        made[name] = {"id": issued.record.id, "key": issued.secret}
    return made


if __name__ == "__main__":
    if sys.argv[1:2] == ["--set-up"]:
        print(json.dumps(set_up(sys.argv[2:])))
    else:
        from django.core.management import execute_from_command_line

        execute_from_command_line(["manage.py", *sys.argv[1:]])
