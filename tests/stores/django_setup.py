"""Django for the ``django://`` half of the store contract suite.

Configured as ``tests/integrations/djangoapp/conftest.py`` does (``settings.configure()``
with the same settings), once, when this folder is collected. Each ``django://`` test is a
transactional pytest-django test on its database, so commits (and what a commit
announces: NOTIFY, the change marker) happen as in production.
"""

from __future__ import annotations

import django
import pytest
from django.conf import settings

from tests.integrations.djangoapp import settings as test_settings

if not settings.configured:
    settings.configure(**{name: getattr(test_settings, name) for name in dir(test_settings)
                          if name.isupper()})
    django.setup()

_POSTGRES = (pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
             if "postgres" in settings.DATABASES
             else pytest.mark.skip(reason="PostgreSQL is not reachable at 127.0.0.1:5432"))

DJANGO_STORES = [
    pytest.param("django-sqlite", id="django-sqlite",
                 marks=pytest.mark.django_db(transaction=True, databases=["default"])),
    pytest.param("django-postgres", id="django-postgres",
                 marks=[pytest.mark.postgres, _POSTGRES]),
]
