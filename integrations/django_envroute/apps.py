"""The app config: registers the ``django://`` key store and the system checks."""

from __future__ import annotations

from django.apps import AppConfig

from .conf import STORE_SCHEME

__all__ = ["STORE_SCHEME", "EnvrouteConfig"]


class EnvrouteConfig(AppConfig):
    name = "django_envroute"
    verbose_name = "envroute API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.core.signals import setting_changed

        from envroute import register_store

        from . import checks as envroute_checks
        from .gateway import on_setting_changed

        register_store(STORE_SCHEME, "django_envroute.store:DjangoStore")
        checks.register(envroute_checks.check_settings, envroute_checks.TAG)
        setting_changed.connect(on_setting_changed, dispatch_uid="django_envroute.reset")
        from envroute.audit import add_listener

        from .cors import check_cors_order
        from .signals import send_event

        checks.register(check_cors_order, envroute_checks.TAG)  # envroute.W021
        add_listener(send_event)  # the envroute_event signal after each change
        from .sandbox import ready as sandbox_ready  # §18: db fence, envroute_id, checks

        sandbox_ready()
