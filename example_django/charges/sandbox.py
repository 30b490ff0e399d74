"""The sandbox backend: the same API over mock data, as a plain WSGI app.

envroute answers sandbox keys with it before Django runs any view, so sandbox traffic
never reaches the production views or the ``charges`` table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

MOCK_CHARGES = [
    {"id": "ch_test_1", "object": "charge", "amount": 1000, "currency": "usd",
     "description": "Mock charge (sandbox data)", "livemode": False},
    {"id": "ch_test_2", "object": "charge", "amount": 2500, "currency": "eur",
     "description": "Mock charge (sandbox data)", "livemode": False},
]


def application(environ: dict[str, Any],
                start_response: Callable[..., Any]) -> Iterable[bytes]:
    identity = environ["envroute.identity"]
    path = environ.get("PATH_INFO", "").rstrip("/")
    status, body = "200 OK", {"object": "list", "livemode": False, "data": MOCK_CHARGES,
                              "key_id": identity.key_id}
    if environ["REQUEST_METHOD"] == "POST" and path == "/v1/charges":
        status, body = "201 Created", {"id": "ch_test_new", "object": "charge",
                                       "livemode": False, "description": "not stored"}
    elif path.startswith("/v1/charges/"):
        found = [c for c in MOCK_CHARGES if c["id"] == path.rsplit("/", 1)[1]]
        status, body = ("200 OK", found[0]) if found else (
            "404 Not Found", {"error": {"message": "No such charge"}})
    elif path != "/v1/charges":
        status, body = "404 Not Found", {"error": {"message": "Unknown path"}}
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload)))])
    return [payload]
