"""Django settings for mypy only: the django-stubs plugin (``[tool.django-stubs]`` in
``pyproject.toml``) imports this module and runs ``django.setup()`` to learn the models.

Nothing else uses it: the tests configure Django from ``settings.py`` (``conftest.py``),
and the shipped package reads no settings module. Keep it free of side effects and of
imports beyond Django's, so the type checker can import it anywhere.
"""

from __future__ import annotations

SECRET_KEY = "typecheck-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_envroute",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
