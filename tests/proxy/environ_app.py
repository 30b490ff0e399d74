"""An in-process backend that answers with the string values of its environ (as JSON), so
tests can look for a credential anywhere a backend could read it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    seen = {key: value for key, value in environ.items() if isinstance(value, str)}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
