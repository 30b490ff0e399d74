"""The admin for API keys: create (secret shown once), list, revoke, roll.

A new key's secret, and a rolled key's new secret, appear exactly once, in a message on
the next page ("you will not be able to see it again"); the database only has its keyed
hash, so no page can show it later. Keys are never deleted from the admin: revoke them,
which keeps the record for audit. Revocation and rolls go through
:class:`envroute.KeyManager`, the same code as ``manage.py envroute_keys``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from envroute import EnvrouteError, IssuedKey

from .forms import ChangeKeyForm, CreateKeyForm
from .gateway import forget_key, get_key_manager
from .models import APIKey

# ModelAdmin is generic only in django-stubs; it cannot be subscripted at run time.
if TYPE_CHECKING:
    # What get_fields() returns: field names, or groups of them shown on one line.
    from django.contrib.admin.options import _FieldGroups

    _APIKeyModelAdmin = admin.ModelAdmin[APIKey]
else:
    _APIKeyModelAdmin = admin.ModelAdmin

SHOWN_ONCE = ("Store it somewhere safe now: you will not be able to see it again.")


def _show_once(request: HttpRequest, what: str, issued: IssuedKey) -> None:
    messages.warning(request, f"{what} {issued.record.id} is: {issued.secret} — {SHOWN_ONCE}")


@admin.register(APIKey)
class APIKeyAdmin(_APIKeyModelAdmin):
    list_display = ("id", "name", "environment", "display_key", "key_status", "created_at",
                    "expires_at", "last_used_at")
    list_filter = ("environment", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("id", "name")
    ordering = ("-created_at",)
    actions = ("revoke_keys", "roll_keys")
    readonly_fields = ("id", "display_key", "environment", "metadata", "scopes", "key_status",
                       "created_at", "expires_at", "revoked_at", "last_used_at")

    @admin.display(description="key")
    def display_key(self, obj: APIKey) -> str:
        return obj.display

    @admin.display(description="status")
    def key_status(self, obj: APIKey) -> str:
        return obj.status()

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
                "key_status", "revoke", "created_at", "expires_at", "revoked_at",
                "last_used_at"]

    def has_delete_permission(self, request: HttpRequest, obj: APIKey | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: APIKey, form: ModelForm[APIKey],
                   change: bool) -> None:
        manager = get_key_manager()
        data = form.cleaned_data
        if change:
            obj.save(update_fields=["name"])
            if data.get("revoke") and obj.revoked_at is None:
                manager.revoke(obj.pk)
                forget_key(obj.pk)
                obj.refresh_from_db()
            return
        issued = manager.create(data["environment"], metadata=data["metadata"],
                                scopes=data["scopes"], name=data["name"],
                                expires_in=data["expires_in"])
        obj.pk = issued.record.id
        obj.refresh_from_db()
        obj._state.adding = False
        _show_once(request, "The API key", issued)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        manager = get_key_manager()
        for key in queryset:
            manager.revoke(key.pk)
            forget_key(key.pk)
        self.message_user(request, f"Revoked {len(queryset)} key(s).", messages.SUCCESS)

    @admin.action(description="Roll selected keys (new secret shown once; the old one "
                              "stops working now)", permissions=["change"])
    def roll_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        manager = get_key_manager()
        for key in queryset:
            try:
                issued = manager.roll(key.pk)
            except EnvrouteError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            forget_key(key.pk)
            _show_once(request, "The new secret of", issued)
