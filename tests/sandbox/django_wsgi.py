"""A Django project for the §18 tests under gunicorn: the integration tests' settings and
``ledger`` app, with the two databases given in ``$SANDBOX_TEST_DATABASES`` (JSON:
alias -> Django database settings) fenced by ``ENVROUTE_DATABASES``.

``gunicorn tests.sandbox.django_wsgi:application``; ``python -m tests.sandbox.django_wsgi``
migrates both databases and prints a sandbox and a production key as JSON.
"""

from __future__ import annotations

import json
import os

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application

from tests.integrations.djangoapp import settings as base

if not settings.configured:
    options = {name: getattr(base, name) for name in dir(base)
               if name.isupper() and not name.startswith("_")}
    options.update(
        DATABASES=json.loads(os.environ["SANDBOX_TEST_DATABASES"]),
        DATABASE_ROUTERS=["django_envroute.db.EnvironmentRouter"],
        ENVROUTE_DATABASES={"sandbox": "sandbox", "production": "default"},
        ROOT_URLCONF="tests.integrations.djangoapp.ledger.urls",
        ENVROUTE={**base.ENVROUTE, "routes": [{"when": {}, "backend": "app"}]},
    )
    settings.configure(**options)
    django.setup()

application = get_wsgi_application()

if __name__ == "__main__":
    from django.core.management import call_command
    from django_envroute.gateway import get_key_manager

    for alias in ("default", "sandbox"):
        call_command("migrate", database=alias, verbosity=0)
    manager = get_key_manager()
    print(json.dumps({env: manager.create(env).secret for env in ("sandbox", "production")}))
