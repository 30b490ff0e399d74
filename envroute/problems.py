"""The contract's refusals as RFC 9457 ``application/problem+json`` responses.

Every place that refuses a request raises :class:`Problem` with one of the codes below;
the gateway renders it here and nowhere else. The table is the contract (§8): a code's
status never varies, and a detail never carries a secret or a token, only what the caller
needs to fix the request (a key is shown as its prefix and ``last4`` at most).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import (
    BackendError,
    BackendTimeout,
    BadRequestBody,
    EnvironmentMismatch,
    StoreUnavailable,
)
from .names import status_line
from .typing import HeaderList, StartResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://envroute.dev/problems/"


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str


#: code -> (HTTP status, title). The contract's §8, verbatim.
PROBLEM_TYPES: Mapping[str, ProblemType] = {
    "missing_credentials": ProblemType(401, "Missing credentials"),
    "invalid_key": ProblemType(401, "Invalid API key"),
    "expired_key": ProblemType(401, "Expired API key"),
    "revoked_key": ProblemType(401, "Revoked API key"),
    "disabled_key": ProblemType(401, "Disabled API key"),
    "invalid_token": ProblemType(401, "Invalid token"),
    "invalid_request": ProblemType(400, "Invalid request"),
    "insufficient_scope": ProblemType(403, "Insufficient scope"),
    "no_route": ProblemType(403, "No route"),
    "environment_mismatch": ProblemType(403, "Environment mismatch"),
    "resource_missing": ProblemType(404, "No such resource"),
    "rate_limited": ProblemType(429, "Rate limited"),
    "backend_unavailable": ProblemType(502, "Backend unavailable"),
    "store_unavailable": ProblemType(503, "Store unavailable"),
    "backend_timeout": ProblemType(504, "Backend timeout"),
}

#: The challenge sent with every 401, so clients know which schemes are accepted.
WWW_AUTHENTICATE = 'Bearer realm="envroute", Basic realm="envroute"'


class Problem(Exception):
    """A refusal, raised anywhere on the request's path and rendered by the gateway.

    ``headers`` carries response headers that belong to the refusal itself, such as
    ``Retry-After`` on ``rate_limited``.
    """

    def __init__(
        self, code: str, detail: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        if code not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem code {code!r}")
        self.code = code
        self.detail = detail
        self.headers: HeaderList = list(headers)
        super().__init__(f"{code}: {detail}")

    @property
    def status(self) -> int:
        return PROBLEM_TYPES[self.code].status

    def to_dict(self, request_id: str) -> dict[str, object]:
        kind = PROBLEM_TYPES[self.code]
        return {
            "type": TYPE_BASE + self.code,
            "title": kind.title,
            "status": kind.status,
            "detail": self.detail,
            "code": self.code,
            "request_id": request_id,
        }

    def body(self, request_id: str) -> bytes:
        return json.dumps(self.to_dict(request_id), separators=(",", ":")).encode()

    def response_headers(self, request_id: str, body: bytes) -> HeaderList:
        headers: HeaderList = [
            ("Content-Type", PROBLEM_CONTENT_TYPE),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Request-Id", request_id),
        ]
        if self.status == 401:
            headers.append(("WWW-Authenticate", WWW_AUTHENTICATE))
        headers.extend(self.headers)
        return headers

    def respond(
        self, start_response: StartResponse, request_id: str, *, head: bool = False
    ) -> list[bytes]:
        """Start the WSGI response and return its body (none for ``HEAD``)."""
        body = self.body(request_id)
        start_response(status_line(self.status), self.response_headers(request_id, body))
        return [] if head else [body]


def as_problem(exc: BaseException) -> Problem:
    """The one translation of a failure on the request's path into the contract's problem.

    Every front end (the WSGI path, Flask, Django's ``process_exception``) and
    ``envroute explain`` call this, so an exception means the same answer everywhere.
    Anything unexpected is ``backend_unavailable``: never a 500, and never a message that
    could carry a secret (the detail is fixed text, not ``str(exc)``). Logging is the
    caller's: the request path logs backend failures and store outages (once per outage).
    """
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, BadRequestBody):
        return Problem("invalid_request", "the request body could not be read (broken "
                       "chunked encoding or a body shorter than its Content-Length)")
    if isinstance(exc, EnvironmentMismatch):
        return Problem("environment_mismatch", "this request touched data of another "
                       "environment than its key's; nothing was changed")
    if isinstance(exc, StoreUnavailable):
        return Problem("store_unavailable", "a store the gateway depends on (keys, rate "
                       "limits or token keys) cannot be reached; retry shortly")
    if isinstance(exc, BackendTimeout):
        return Problem("backend_timeout", "the backend did not answer in time")
    if isinstance(exc, BackendError):
        return Problem("backend_unavailable", "the backend could not be reached")
    return Problem("backend_unavailable", "the request could not be completed")
