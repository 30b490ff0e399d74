"""Settings of the example: a charges API whose keys are managed by django_envroute.

Sandbox keys (``sk_test_…``) are answered by ``charges.sandbox`` (mock data, in process);
production keys (``sk_live_…``) reach the ``charges`` views and the database. The keys
themselves live in the same database (``django_envroute``'s tables).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Set both in production; the defaults are for trying the example on your machine.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_envroute",
    "charges",
]

MIDDLEWARE = [
    "django_envroute.middleware.EnvRouteMiddleware",  # first: nothing runs before the key check
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "exampleproject.urls"
WSGI_APPLICATION = "exampleproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# envroute: the same schema as envroute.toml. Keys live in DATABASES["default"].
ENVROUTE = {
    "secret": "${ENVROUTE_SECRET:-example-only-secret-0123456789-abcdefghij}",
    "backends": {"sandbox": {"app": "charges.sandbox:application"}},
    "routes": [
        {"when": {"environment": "sandbox"}, "backend": "sandbox"},
        {"when": {"environment": "production"}, "backend": "app"},
    ],
}
# The admin signs people in with Django's own auth, not with API keys.
ENVROUTE_EXEMPT_PATHS = ["/admin/", "/static/"]
