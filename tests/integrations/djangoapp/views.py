"""The test project's views (the backend ``app``) and its in-process sandbox backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django_envroute import get_identity

#: Requests that reached a Django view, so a test can tell that none did.
VIEW_CALLS: list[str] = []


def charges(request: HttpRequest) -> HttpResponse:
    VIEW_CALLS.append(request.path)
    identity = get_identity(request)
    assert identity is not None
    return JsonResponse({
        "served_by": "django",
        "key_id": identity.key_id,
        "environment": identity.environment,
        "metadata": dict(identity.metadata),
        "same_in_environ": request.environ["envroute.identity"] is request.envroute,  # type: ignore[attr-defined]
        "authorization": request.headers.get("Authorization"),
        "client_key_id_header": request.headers.get("Envroute-Key-Id"),
    })


def missing(request: HttpRequest) -> HttpResponse:
    raise Http404("no such thing")


def cross_environment(request: HttpRequest) -> HttpResponse:
    """Writes, then trips the environment fence (as django_envroute.db would)."""
    from django.contrib.auth.models import User

    from envroute import EnvironmentMismatch

    VIEW_CALLS.append(request.path)
    User.objects.create(username="written-before-the-fence")
    raise EnvironmentMismatch("a sandbox request queried the production database")


def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True, "identity": get_identity(request) is not None})


def sandbox_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    """A generator WSGI app: starts its response on the first iteration, streams two parts."""
    identity = environ["envroute.identity"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Served-By", "sandbox")])
    yield b"sandbox "
    yield identity.key_id.encode()
