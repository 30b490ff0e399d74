"""Names shared by every part of envroute, each defined once.

The environ keys are the gateway's results, read by backends and the framework
integrations (werkzeug's ProxyFix documents its one environ key beside its code; envroute
has three, so they live here). Security: only the gateway sets them; a backend can trust
what it finds under them, because client-sent ``Envroute-*`` headers and any value a
caller could smuggle in are removed first.
"""

from __future__ import annotations

from http import HTTPStatus

#: The authenticated caller: an :class:`envroute.Identity`.
IDENTITY_KEY = "envroute.identity"
#: The name of the backend that serves the request.
BACKEND_KEY = "envroute.backend"
#: The request's id (``req_…``), also sent to the caller as ``Request-Id``.
REQUEST_ID_KEY = "envroute.request_id"
#: Set by ``envroute explain``: policies decide without counting anything.
DRY_RUN_KEY = "envroute.explain"

#: RFC 9110 §7.6.1, plus the non-standard ``Proxy-Connection``: never forwarded either way.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})

#: Response headers a URL backend's answer never passes back with: they name the backend,
#: and the gateway's server sets its own ``Server`` and ``Date``.
NOT_RETURNED = frozenset({"server", "x-powered-by", "date"})
#: Response headers whose values may be URLs into a URL backend (rewritten on the way back).
URL_HEADERS = frozenset({"location", "content-location", "link", "refresh"})

#: Methods that failover may send to a second backend: they are safe to repeat.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``"Unknown"`` for unregistered codes)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def status_line(status: int) -> str:
    """``"404 Not Found"``: a WSGI status string."""
    return f"{status} {reason_phrase(status)}"
