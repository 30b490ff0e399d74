"""A backend for the multi-gateway tests: answers with the worker's process id."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def pid_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
