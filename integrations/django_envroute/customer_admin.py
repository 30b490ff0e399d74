"""The admin for customers and the audit log (contract §12, §16).

Customers: list, create, edit (name, and metadata as a JSON object, validated as the CLI
validates it), disable and enable, each customer's keys and its traffic beside it. Every
change goes through ``router.customers`` acting for the admin's user, so it is audited,
sends ``envroute_event`` and is honoured by every worker within about a second: editing
``backend`` in a customer's metadata moves all its keys. Customers are never deleted
(their keys and audit records name them); disable one instead.

The audit log is read-only (no add, change or delete), newest first, linked from the admin
index as "Audit records". It never holds a secret.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from envroute.commandtools import TAKES_EFFECT
from envroute.customers import CUSTOMER_ID

from . import models
from .adminkit import StoreModelAdmin, apply_each, managers_for, usage_html
from .forms import clean_metadata, clean_name

#: The 0.2 models (``django://`` store, migration 0002); looked up so this module also
#: imports against a store without them, registering nothing then.
Customer: Any = getattr(models, "Customer", None)
AuditEntry: Any = getattr(models, "AuditEntry", None)

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups

    _AuditAdmin = admin.ModelAdmin[Any]
    _CustomerForm = forms.ModelForm[Any]
else:
    _AuditAdmin = admin.ModelAdmin
    _CustomerForm = forms.ModelForm


class CustomerForm(_CustomerForm):
    metadata = forms.JSONField(required=False, initial=dict, help_text=(
        'A JSON object every key of the customer inherits, such as {"backend": '
        '"dedicated-acme", "tier": "enterprise"}; a change ' + TAKES_EFFECT + "."))

    class Meta:
        model = Customer
        fields = ("id", "name", "metadata")

    def clean_id(self) -> str:
        value = str(self.cleaned_data.get("id") or "")
        if not CUSTOMER_ID.match(value):
            raise forms.ValidationError("1-64 characters of A-Za-z0-9_.:-")
        return value

    def clean_metadata(self) -> dict[str, Any]:
        return clean_metadata(self.cleaned_data.get("metadata"), self)

    def clean_name(self) -> str:
        return clean_name(self.cleaned_data.get("name"), self)


class CustomerAdmin(StoreModelAdmin):
    form = CustomerForm
    list_display = ("id", "name", "customer_status", "metadata_text", "created_at")
    search_fields = ("id", "name")
    ordering = ("id",)
    actions = ("disable_customers", "enable_customers")
    readonly_fields = ("customer_status", "created_at", "disabled_at", "keys", "usage")

    @admin.display(description="status")
    def customer_status(self, obj: Any) -> str:
        return str(obj.status)

    @admin.display(description="metadata")
    def metadata_text(self, obj: Any) -> str:
        return json.dumps(obj.metadata or {}, sort_keys=True)

    @admin.display(description="keys")
    def keys(self, obj: Any) -> SafeString | str:
        records = managers_for_none().customers.keys(obj.pk)
        if not records:
            return "no keys yet"
        page = "admin:django_envroute_apikey_change"  # ids escaped as the admin's own links
        rows = format_html_join("", "<tr><td><a href=\"{}\">{}</a></td><td>{}</td>"
                                "<td>{}</td><td>{}</td></tr>",
                                ((reverse(page, args=[quote(k.id)]), k.id, k.environment,
                                  k.status(), k.display) for k in records))
        return format_html("<table><tr><th>key</th><th>environment</th><th>status</th>"
                           "<th>secret</th></tr>{}</table>", rows)

    @admin.display(description="requests per day")
    def usage(self, obj: Any) -> SafeString | str:
        return usage_html([k.id for k in managers_for_none().customers.keys(obj.pk)])

    def get_fields(self, request: HttpRequest, obj: Any = None) -> _FieldGroups:
        if obj is None:
            return ["id", "name", "metadata"]
        return ["name", "metadata", "customer_status", "created_at", "disabled_at", "keys",
                "usage"]

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any],
                   change: bool) -> None:
        customers = managers_for(request).customers
        data = form.cleaned_data
        if change:
            customers.update(obj.pk, name=data["name"], metadata=data["metadata"])
        else:
            customers.create(data["id"], name=data["name"], metadata=data["metadata"])
        obj.refresh_from_db()
        obj._state.adding = False

    @admin.action(description="Disable selected customers (all their keys answer "
                              "disabled_key; nothing is revoked)", permissions=["change"])
    def disable_customers(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        done = apply_each(self, request, queryset, managers_for(request).customers.disable)
        if done:
            self.message_user(request, f"Disabled {done} customer(s); the change "
                              f"{TAKES_EFFECT}.", messages.SUCCESS)

    @admin.action(description="Enable selected customers", permissions=["change"])
    def enable_customers(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        done = apply_each(self, request, queryset, managers_for(request).customers.enable)
        if done:
            self.message_user(request, f"Enabled {done} customer(s).", messages.SUCCESS)


def managers_for_none() -> Any:
    """Managers for reading only (no actor needed)."""
    from envroute.commandtools import Managers

    from .gateway import get_router

    return Managers.of_router(get_router())


class AuditEntryAdmin(_AuditAdmin):
    """Read-only: who changed which key, customer or stored backend, newest first."""

    list_display = ("at", "actor", "action", "target", "customer_id", "changes_text")
    list_filter = ("kind", "action")
    search_fields = ("target", "actor", "customer_id")
    ordering = ("-seq",)

    @admin.display(description="changes")
    def changes_text(self, obj: Any) -> str:
        return json.dumps(obj.changes or {}, sort_keys=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


if Customer is not None and AuditEntry is not None:
    admin.site.register(Customer, CustomerAdmin)
    admin.site.register(AuditEntry, AuditEntryAdmin)
