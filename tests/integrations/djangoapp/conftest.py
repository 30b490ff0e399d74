"""Configures Django for this folder only, as pytest-django allows without a settings
module: ``settings.configure()`` then ``django.setup()``, when this folder is collected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings

from envroute import IssuedKey

from . import settings as test_settings

if not settings.configured:
    settings.configure(**{name: getattr(test_settings, name) for name in dir(test_settings)
                          if name.isupper()})
    django.setup()


@pytest.fixture(autouse=True)
def fresh_gateway() -> Iterator[None]:
    """Each test builds the gateway from its own settings (and its own verdict cache)."""
    from django_envroute.gateway import reset_router

    reset_router()
    yield
    reset_router()


@pytest.fixture
def make_key(db: None) -> Callable[..., IssuedKey]:
    from django_envroute.gateway import get_key_manager

    def make(environment: str = "production", **kwargs: Any) -> IssuedKey:
        return get_key_manager().create(environment, **kwargs)

    return make
