"""Views that do what a real view might, right and wrong, for the fence's tests."""

from __future__ import annotations

import contextlib
import json

from django.db import connections as django_connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_envroute import get_identity
from django_envroute.db import CrossEnvironmentAccess, alias_for, connections

from envroute.ids import new_id

from .models import Entry


def _body(request: HttpRequest) -> dict[str, str]:
    data: dict[str, str] = json.loads(request.body or b"{}")
    return data


@csrf_exempt
def entries(request: HttpRequest) -> HttpResponse:
    identity = get_identity(request)
    assert identity is not None
    if request.method == "POST":
        entry = Entry.objects.create(id=new_id("en", identity), amount=int(_body(request)
                                     .get("amount", 1)))
        return JsonResponse({"id": entry.id}, status=201)
    return JsonResponse({"environment": identity.environment,
                         "data": [e.id for e in Entry.objects.all()]})


def entry(request: HttpRequest, entry_id: str) -> HttpResponse:
    found = Entry.objects.filter(pk=entry_id).first()
    if found is None:
        return JsonResponse({"error": "not in this environment's database"}, status=404)
    return JsonResponse({"id": found.id, "amount": found.amount})


@csrf_exempt
def cross(request: HttpRequest, how: str) -> HttpResponse:
    """Write to the caller's database, then touch the other environment's, ``how``."""
    identity = get_identity(request)
    assert identity is not None
    Entry.objects.create(id=new_id("en", identity), amount=1000, note="before")
    other = _body(request)["other"]
    if how == "using":
        list(Entry.objects.using(other).all())
    elif how == "raw":
        with django_connections[other].cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM ledger_entry")
    elif how == "fenced":
        connections[other]
    elif how == "swallowed":
        with contextlib.suppress(CrossEnvironmentAccess):  # the middleware answers 403 anyway
            Entry.objects.using(other).create(id="en_x", amount=1)
        return JsonResponse({"swallowed": True})
    return JsonResponse({"reached": "the end"})


def own_raw(request: HttpRequest) -> HttpResponse:
    """Raw SQL on the caller's own connection, through django_envroute.db."""
    with connections.current().cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM ledger_entry")
        (count,) = cursor.fetchone()
    identity = get_identity(request)
    assert identity is not None
    return JsonResponse({"count": count, "alias": alias_for(identity.environment)})
