"""The apps the benchmarks serve: a bare WSGI app, and the same app behind EnvRouter.

``BENCH_CONFIG`` names the TOML config of the gateway (the benchmark writes it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

BODY = b'{"object":"list","data":[]}'


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def _gateway() -> Any:
    from envroute import EnvRouter

    return EnvRouter(bare_app, os.environ["BENCH_CONFIG"])


gateway_app = _gateway() if os.environ.get("BENCH_CONFIG") else None
