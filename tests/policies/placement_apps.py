"""A backend for the live-placement tests: the worker's pid and the effective metadata it
was told, so a test sees which worker answered and what that worker believed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def identity_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    identity = environ.get("envroute.identity")
    metadata = dict(identity.metadata) if identity is not None else {}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"name": "main", "pid": os.getpid(), "metadata": metadata}).encode()]
