"""What the envroute admins share (keys in :mod:`.admin`, customers and the audit log in
:mod:`.customer_admin`): the managers acting for the admin's user, the usage chart, an
action applied to each selected object, a form saved through the store, a confirmation
page, and :class:`StoreModelAdmin`, the base of both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from envroute import EnvrouteError
from envroute.commandtools import Managers
from envroute.guards import since_days
from envroute.stores.base import utcnow

from .charts import DAYS, usage_chart
from .gateway import get_router
from .store import DjangoStore

# ModelAdmin is generic only in django-stubs; it cannot be subscripted at run time.
if TYPE_CHECKING:
    _StoreModelAdmin = admin.ModelAdmin[Any]
else:
    _StoreModelAdmin = admin.ModelAdmin

GRACE_CHOICES = (("0s", "no time: retire it now"), ("1h", "1 hour"), ("24h", "24 hours"),
                 ("7d", "7 days"))
LOCKED = ("Another process was writing to the database; try again. On SQLite, set "
          "transaction_mode IMMEDIATE in the database's OPTIONS (manage.py check: "
          "envroute.W022).")


def managers_for(request: HttpRequest) -> Managers:
    """The gateway's managers, acting for the admin's user (the audit log's actor)."""
    user = getattr(request, "user", None)
    return Managers.of_router(get_router(), user.get_username() if user else None)


def usage_html(key_ids: Sequence[str]) -> SafeString | str:
    """The last 30 days of traffic as a small bar chart (the store's daily counts)."""
    if not key_ids:
        return "no keys"
    try:
        days = get_router().store.usage(list(key_ids), since_days(DAYS))
    except (EnvrouteError, NotImplementedError) as exc:
        return f"usage unavailable: {exc}"
    return usage_chart(days, utcnow().date())


def apply_each(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any],
               change: Callable[[str], object]) -> int:
    """``change(pk)`` for each selected object; how many were changed. A refusal (the store
    unavailable or busy; a revoked key, whose revocation is permanent) is an error message
    naming the object, never a 500 page, and the others are still changed."""
    done = 0
    for obj in queryset:
        try:
            change(obj.pk)
        except EnvrouteError as exc:
            modeladmin.message_user(request, f"Not changed: {obj.pk}: {exc}", messages.ERROR)
            continue
        done += 1
    return done


def save_form(modeladmin: Any, request: HttpRequest,
              view: Callable[[], HttpResponse]) -> HttpResponse:
    """An add or change form (``view``, Django's ``changeform_view``): a POST takes the
    store's write lock first, and a save the store refuses is a message on the form's page.

    Django runs the form in a transaction that reads (the object, the user) before the
    store writes; on SQLite such a transaction is refused at once ("database is locked")
    while another process writes, such as a gunicorn worker recording usage. Taking the
    lock first makes the form wait for that writer instead. Under ``ATOMIC_REQUESTS``
    without ``transaction_mode = "IMMEDIATE"`` the request's transaction has read already:
    then the lock is refused before anything changed, and the admin is told so.
    """
    if request.method != "POST":
        return view()
    store = get_router().store
    locked: AbstractContextManager[object] = (
        store.write_locked() if isinstance(store, DjangoStore) else nullcontext())
    try:
        with locked:
            return view()
    except EnvrouteError as exc:  # rolled back whole: the form's changes and the admin log
        hint = f" {LOCKED}" if "database is locked" in str(exc) else ""
        modeladmin.message_user(request, f"Not saved: {exc}.{hint}", messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())


def confirm(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any], *, action: str,
            title: str, question: str, submit: str, timing: str = "",
            grace: bool = False) -> TemplateResponse:
    """The intermediate page of an action that asks before it acts."""
    return TemplateResponse(request, "admin/django_envroute/confirm_action.html", {
        **modeladmin.admin_site.each_context(request), "opts": modeladmin.model._meta,
        "title": title, "question": question, "items": [str(obj) for obj in queryset],
        "selected": [obj.pk for obj in queryset], "action": action, "submit": submit,
        "timing": timing, "grace_choices": GRACE_CHOICES if grace else ()})


class StoreModelAdmin(_StoreModelAdmin):
    """An admin for what the store keeps (keys, customers): never deleted (revoke or
    disable instead, which keeps the record for audit), and forms saved through
    :func:`save_form`."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changeform_view(self, request: HttpRequest, object_id: str | None = None,
                        form_url: str = "", extra_context: dict[str, Any] | None = None
                        ) -> HttpResponse:
        view = super().changeform_view
        return save_form(self, request, lambda: view(request, object_id, form_url,
                                                     extra_context))
