"""``django_envroute``: Stripe-style test/live API keys for a Django project.

Add ``"django_envroute"`` to ``INSTALLED_APPS`` and
``"django_envroute.middleware.EnvRouteMiddleware"`` to the top of ``MIDDLEWARE``, and put
the configuration (the contract's TOML schema, as a dict) in ``settings.ENVROUTE``.
Every request is then authenticated by its API key and routed by the key's metadata:
requests for the backend ``app`` continue to Django's views with the caller on
``request.envroute``; requests for another backend (an in-process mock, an upstream URL)
are answered by it without touching a view; refusals are ``application/problem+json``.

Keys live in the project's own database (the ``APIKey`` model, only keyed hashes of
secrets), managed in the admin or with ``manage.py envroute_keys``. ``manage.py check``
validates ``settings.ENVROUTE`` (ids ``envroute.E001`` …).

This module imports nothing from Django's models, so it is safe to import from settings.
"""

from __future__ import annotations

from .identity import get_identity

__all__ = ["get_identity"]
