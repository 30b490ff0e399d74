"""The admin for API keys: create (secret shown once), list, edit, disable, revoke, roll.

A new key's secret, and a rolled key's new secret, appear exactly once, in a message on
the next page ("you will not be able to see it again"); the database only has its keyed
hash, so no page can show it later. Keys are never deleted from the admin: revoke them,
which keeps the record for audit. Every change goes through the gateway's managers
(``router.keys``), acting for the admin's user, so it is in the audit log, sends the
``envroute_event`` signal and is honoured by this process at once.

The risks named here: a revocation is permanent, so it asks for confirmation (the action
shows a confirmation page; the change form needs its confirm box ticked); a roll that
retires the old secret at once breaks a live integration, so the roll action offers a
grace period. "View site" is hidden when ``/`` needs an API key (it would be a 401).
A save the store refuses (SQLite locked by another process's write, the database down) is
a message on the form's page, never a 500: see :func:`.adminkit.save_form`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from envroute import EnvrouteError, IssuedKey
from envroute.commandtools import TAKES_EFFECT
from envroute.config import parse_duration

from .adminkit import StoreModelAdmin, apply_each, confirm, managers_for, usage_html
from .conf import conf
from .forms import ChangeKeyForm, CreateKeyForm
from .models import APIKey

if TYPE_CHECKING:
    # What get_fields() returns: field names, or groups of them shown on one line.
    from django.contrib.admin.options import _FieldGroups

SHOWN_ONCE = ("Store it somewhere safe now: you will not be able to see it again.")
REVOKE_TIMING = "Revocation is permanent and " + TAKES_EFFECT + "."

if admin.site.site_url == "/" and "/" not in conf.exempt_paths:
    admin.site.site_url = None  # "/" needs a key: "View site" would be a 401


def _show_once(request: HttpRequest, what: str, issued: IssuedKey) -> None:
    messages.warning(request, f"{what} {issued.record.id} is: {issued.secret} — {SHOWN_ONCE}")


@admin.register(APIKey)
class APIKeyAdmin(StoreModelAdmin):
    list_display = ("id", "name", "environment", "display_key", "key_status", "created_at",
                    "expires_at", "last_used_at")
    list_filter = ("environment", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("id", "name")
    ordering = ("-created_at",)
    actions = ("revoke_keys", "roll_keys", "disable_keys", "enable_keys")
    readonly_fields = ("id", "display_key", "environment", "scopes", "key_status",
                       "created_at", "expires_at", "revoked_at", "last_used_at", "usage")

    @admin.display(description="key")
    def display_key(self, obj: APIKey) -> str:
        return obj.display

    @admin.display(description="status")
    def key_status(self, obj: APIKey) -> str:
        return obj.status()

    @admin.display(description="requests per day")
    def usage(self, obj: APIKey) -> SafeString | str:
        return usage_html([obj.pk])

    def get_form(self, request: HttpRequest, obj: APIKey | None = None, change: bool = False,
                 **kwargs: Any) -> type[ModelForm[APIKey]]:
        kwargs["form"] = ChangeKeyForm if obj is not None else CreateKeyForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None
                            ) -> tuple[str, ...]:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> _FieldGroups:
        if obj is None:
            return ["environment", "name", "metadata", "scopes", "expires_in"]
        return ["id", "display_key", "name", "environment", "metadata", "scopes",
                "key_status", "usage", "revoke", "confirm_revoke", "created_at",
                "expires_at", "revoked_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: APIKey, form: ModelForm[APIKey],
                   change: bool) -> None:
        keys = managers_for(request).keys
        data = form.cleaned_data
        if change:
            keys.update(obj.pk, name=data["name"], metadata=data["metadata"])
            if data.get("revoke") and obj.revoked_at is None:
                keys.revoke(obj.pk)
            obj.refresh_from_db()
            return
        issued = keys.create(data["environment"], metadata=data["metadata"],
                             scopes=data["scopes"], name=data["name"],
                             expires_in=data["expires_in"])
        obj.pk = issued.record.id
        obj.refresh_from_db()
        obj._state.adding = False
        _show_once(request, "The API key", issued)

    @admin.action(description="Revoke selected keys (asks first)", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]
                    ) -> HttpResponse | None:
        if request.POST.get("confirm") != "yes":
            return confirm(self, request, queryset, action="revoke_keys",
                           title="Revoke API keys", submit="Yes, revoke them",
                           question="Revoke these keys? Requests with them will be refused "
                                    "with revoked_key; this cannot be undone.",
                           timing=REVOKE_TIMING)
        done = apply_each(self, request, queryset, managers_for(request).keys.revoke)
        if done:
            self.message_user(request, f"Revoked {done} key(s). {REVOKE_TIMING}",
                              messages.SUCCESS)
        return None

    @admin.action(description="Roll selected keys (new secret shown once; choose how long "
                              "the old one keeps working)", permissions=["change"])
    def roll_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]
                  ) -> HttpResponse | None:
        if request.POST.get("confirm") != "yes":
            return confirm(self, request, queryset, action="roll_keys",
                           title="Roll API keys", submit="Roll",
                           question="Give these keys a new secret? Each new secret is shown "
                                    "once.", grace=True)
        try:
            grace = parse_duration(request.POST.get("grace") or "0s")
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        keys = managers_for(request).keys
        for key in queryset:
            try:
                issued = keys.roll(key.pk, expires_in=grace)
            except EnvrouteError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            _show_once(request, "The new secret of", issued)
        return None

    @admin.action(description="Disable selected keys (disabled_key until enabled)",
                  permissions=["change"])
    def disable_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        done = apply_each(self, request, queryset, managers_for(request).keys.disable)
        if done:
            self.message_user(request, f"Disabled {done} key(s).", messages.SUCCESS)

    @admin.action(description="Enable selected keys", permissions=["change"])
    def enable_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        done = apply_each(self, request, queryset, managers_for(request).keys.enable)
        if done:
            self.message_user(request, f"Enabled {done} key(s).", messages.SUCCESS)


# Customers and the audit log (their models arrive with the 0.2 store).
from . import customer_admin  # noqa: E402, F401
