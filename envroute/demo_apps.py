"""The demo's two backends: a sandbox that serves mock data and a "production" API.

They are tiny werkzeug apps so the demo needs nothing but envroute's own dependencies.
Each answers ``GET /v1/charges`` (and ``/v1/charges/<id>``) with Stripe-shaped JSON and
says which backend it is, so a person trying the demo sees the routing happen.

Run the production one as its own process (the demo does, to show a URL backend):
``python -m envroute.demo_apps --port 9001``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from .typing import StartResponse, WSGIEnvironment

MOCK_CHARGES = [
    {"id": "ch_test_1", "amount": 1000, "currency": "usd", "status": "succeeded",
     "description": "Mock charge (sandbox data)"},
    {"id": "ch_test_2", "amount": 2500, "currency": "eur", "status": "pending",
     "description": "Mock charge (sandbox data)"},
]
LIVE_CHARGES = [
    {"id": "ch_live_9f2", "amount": 129900, "currency": "usd", "status": "succeeded",
     "description": "Annual plan, ACME Corp"},
]


class ChargesAPI:
    """A read-only charges API over a fixed list: enough to see which backend answered."""

    def __init__(self, backend: str, charges: list[dict[str, Any]], livemode: bool) -> None:
        self.backend = backend
        self.charges = charges
        self.livemode = livemode

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        caller = {"key_id": request.headers.get("Envroute-Key-Id"),
                  "environment": request.headers.get("Envroute-Environment")}
        identity = environ.get("envroute.identity")
        if identity is not None:  # in-process: the identity object itself
            caller = {"key_id": identity.key_id, "environment": identity.environment}
        path = request.path.rstrip("/")
        if path == "/v1/charges":
            body: dict[str, Any] = {"object": "list", "data": self.charges}
            status = 200
        elif path.startswith("/v1/charges/"):
            found = [c for c in self.charges if c["id"] == path.rsplit("/", 1)[1]]
            body, status = (found[0], 200) if found else (
                {"error": {"type": "invalid_request_error", "message": "No such charge"}}, 404)
        else:
            body, status = {"message": "try GET /v1/charges"}, 404
        body.update(livemode=self.livemode, served_by=self.backend, caller=caller)
        response = Response(json.dumps(body, indent=2) + "\n", status=status,
                            content_type="application/json")
        return response(environ, start_response)


sandbox_app = ChargesAPI("sandbox (mock data)", MOCK_CHARGES, livemode=False)
production_app = ChargesAPI("production", LIVE_CHARGES, livemode=True)
#: The demo moves a customer here with ``customers update acme --meta backend=…``.
dedicated_app = ChargesAPI("production, dedicated to acme", LIVE_CHARGES, livemode=True)


def main() -> None:  # pragma: no cover - exercised through the demo's subprocess
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description="the demo's production backends")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--dedicated", action="store_true",
                        help="serve as the dedicated backend the demo moves a customer to")
    args = parser.parse_args()
    app = dedicated_app if args.dedicated else production_app
    server = make_server(args.host, args.port, app, threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
