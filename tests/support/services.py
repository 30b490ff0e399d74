"""Detecting the real PostgreSQL and Redis this machine (and CI) provides.

A test that needs one asks for the fixture; where the service is absent it is skipped
with the reason, except when ``CI`` is set: there a missing service is a failure, so a
green CI always means the tests really ran against it.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_URL = os.environ.get("ENVROUTE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ENVROUTE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) unless ``host:port`` accepts connections."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI is set: CI must run every test", pytrace=False)
    pytest.skip(message)


def require_postgres() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


def require_redis() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL
