"""Settings of the example: one charges API, two environments, two databases.

Every key reaches the same ``charges`` views; ``django_envroute.db.EnvironmentRouter``
sends a sandbox key's queries to the ``sandbox`` database (mock data) and a live key's to
``default`` (production), and refuses any query of one environment on the other's
database. The keys themselves live in ``default`` (``django_envroute``'s tables).
"""

import os
from pathlib import Path

import django

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

# One database per environment. ATOMIC_REQUESTS: a request that touches the other
# environment's database is answered 403 with all of its writes rolled back. With it, SQLite
# needs IMMEDIATE transactions (Django 5.1+; manage.py check: envroute.W022), or a request
# that reads and then writes is refused "database is locked" while a worker writes.
SQLITE_OPTIONS = {"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}
DATABASES = {
    "default": {  # production, and the API keys
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
        "ATOMIC_REQUESTS": True,
        "OPTIONS": SQLITE_OPTIONS,
    },
    "sandbox": {  # the sandbox's mock data
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DJANGO_SANDBOX_DB", str(BASE_DIR / "sandbox.sqlite3")),
        "ATOMIC_REQUESTS": True,
        "OPTIONS": SQLITE_OPTIONS,
    },
}
DATABASE_ROUTERS = ["django_envroute.db.EnvironmentRouter"]
ENVROUTE_DATABASES = {"sandbox": "sandbox", "production": "default"}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# envroute: the same schema as envroute.toml. Keys live in DATABASES["default"].
# Both environments reach this project's views; ENVROUTE_DATABASES keeps their data apart.
ENVROUTE = {
    "secret": "${ENVROUTE_SECRET:-example-only-secret-0123456789-abcdefghij}",
    "routes": [
        {"when": {"environment": ["sandbox", "production"]}, "backend": "app"},
    ],
}
# The admin signs people in with Django's own auth, not with API keys.
ENVROUTE_EXEMPT_PATHS = ["/admin/", "/static/"]
