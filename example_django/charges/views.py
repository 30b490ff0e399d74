"""The charges API, one codebase for both environments.

``request.envroute`` is the caller; the database is chosen by envroute from its
environment (``ENVROUTE_DATABASES``), so these views never name one: a sandbox key reads
and writes the sandbox database, a live key the production database, and nothing in
a sandbox request can reach production data.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt

from envroute.ids import new_id

from .models import Charge


@csrf_exempt  # an API authenticated by keys, not by cookies
def charges(request: HttpRequest) -> HttpResponse:
    identity = request.envroute  # type: ignore[attr-defined]
    livemode = identity.environment == "production"
    if request.method == "POST":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            data = None
        amount = data.get("amount") if isinstance(data, dict) else None
        if not isinstance(amount, int) or amount <= 0:
            return JsonResponse({"error": {"message": "amount (a positive integer) is "
                                           "required"}}, status=400)
        charge = Charge.objects.create(
            id=new_id("ch", identity), amount=amount,
            currency=str(data.get("currency", "usd"))[:3],
            description=str(data.get("description", ""))[:200], created_by=identity.key_id)
        return JsonResponse(charge.to_dict(), status=201)
    return JsonResponse({"object": "list", "livemode": livemode, "key_id": identity.key_id,
                         "data": [c.to_dict() for c in Charge.objects.all()]})


def charge(request: HttpRequest, charge_id: str) -> HttpResponse:
    found = get_object_or_404(Charge, pk=charge_id)
    return JsonResponse(found.to_dict())
