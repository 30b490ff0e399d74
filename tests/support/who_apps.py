"""In-process backends that say who they are and who asked (the worker-killed fault test,
the ``django://`` propagation test under gunicorn).

The answer is JSON: the backend's name, the worker's process id and the identity the
gateway gave it (key id, customer id), so the test reads "which backend, which worker, for
whom" from every response instead of assuming it.

``GET /v1/hold`` is a request caught in the middle: the worker writes its process id to
``held`` beside the gateway's config (``$ENVROUTE_CONFIG``) and then waits (at most a
minute), so the test knows which worker to kill while it serves a request.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOLD_PATH = "/v1/hold"
HOLD_FILE = "held"


def held_file() -> Path:
    return Path(os.environ["ENVROUTE_CONFIG"]).parent / HOLD_FILE


def _backend(name: str) -> Callable[..., list[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") == HOLD_PATH:
            held = held_file()
            held.with_suffix(".tmp").write_text(str(os.getpid()))
            held.with_suffix(".tmp").rename(held)  # whole, never half written
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until the test kills this worker
                time.sleep(0.1)
        identity = environ["envroute.identity"]
        body = json.dumps({"name": name, "pid": os.getpid(), "key_id": identity.key_id,
                           "customer_id": identity.customer_id}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app


shared = _backend("shared")
dedicated_acme = _backend("dedicated-acme")
sandbox = _backend("sandbox")
