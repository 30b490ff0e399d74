"""Django settings for the integration tests, applied by ``conftest.py`` with
``settings.configure()`` (not DJANGO_SETTINGS_MODULE, which subprocesses would inherit)."""

from __future__ import annotations

import os
import tempfile

from tests.conftest import SECRET
from tests.support.services import reachable

SECRET_KEY = "django-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.integrations.djangoapp.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_envroute",
    "tests.integrations.djangoapp.ledger",  # §18: a model in each environment's database
]
MIDDLEWARE = [
    "django_envroute.middleware.EnvRouteMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES: dict[str, dict[str, object]] = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
# §18: one SQLite file per environment (test_sandbox_db.py sets ENVROUTE_DATABASES itself).
_sqlite_dir = tempfile.gettempdir()
for _alias in ("sandbox", "live"):
    _file = os.path.join(_sqlite_dir, f"envroute_{_alias}_{os.getpid()}.sqlite3")
    DATABASES[_alias] = {"ENGINE": "django.db.backends.sqlite3", "NAME": _file,
                         "TEST": {"NAME": _file}}
# The real PostgreSQL, where there is one (always under CI: a missing server fails there).
if reachable("127.0.0.1", 5432) or os.environ.get("CI"):
    DATABASES["postgres"] = {
        "ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": 5432,
        "NAME": "test", "USER": os.environ.get("PGUSER", ""),
        "TEST": {"NAME": f"envroute_django_{os.getpid()}"},
    }
    DATABASES["pg_sandbox"] = {**DATABASES["postgres"],
                               "TEST": {"NAME": f"envroute_django_sandbox_{os.getpid()}"}}

ENVROUTE = {
    "secret": SECRET,
    "environments": {"sandbox": {}, "production": {}, "staging": {"prefix": "sk_stage_"}},
    "backends": {"sandbox": {"app": "tests.integrations.djangoapp.views:sandbox_app"}},
    "scopes": {"charges:read": ["GET /v1/charges"]},
    "routes": [
        {"when": {"environment": "sandbox"}, "backend": "sandbox"},
        {"when": {"environment": "production"}, "backend": "app"},
    ],
}
ENVROUTE_EXEMPT_PATHS = ["/admin/", "/health"]
