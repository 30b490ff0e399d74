"""URL backends failing under load, through gunicorn (issue 16; CONTRACT §8).

``primary`` is reached through a :class:`~tests.support.faults.Forwarder`, with
``secondary`` as its failover for GETs. Every request carries a unique path, so the
upstreams' logs show where each one went and how often. Whatever the fault:

- refused: GETs are served by ``secondary``, POSTs are ``502 backend_unavailable``;
- black-holed: ``504 backend_timeout`` within the backend's timeout (never a hang);
- reset with requests in flight, or dead after its response head: ``502
  backend_unavailable``, a problem, never gunicorn's HTML 500;
- dead mid-body: the connection is closed short, never passed off as complete;
- a POST reaches an upstream at most once, and never ``secondary``; every dependency
  recovers without a restart.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from envroute import KeyManager
from envroute.config import load_file
from envroute.stores.sqlite import SQLiteStore
from tests.faults.conftest import WORKERS, bearer, gateway, label
from tests.proxy.conftest import Upstream
from tests.support.faults import Load, forwarding

pytestmark = pytest.mark.slow

TIMEOUT = 1.0  # the backends' timeout and connect_timeout in this config
SLACK = 8.0
DIE_AT = 4096  # mid-body: this many bytes of twice as many promised
PROBLEM_502 = "502 backend_unavailable"


def config(tmp_path: Path, primary: int, secondary: int) -> str:
    return f"""
[store]
url = "sqlite:///{tmp_path / 'keys.db'}"
[backends.primary]
url = "http://127.0.0.1:{primary}"
timeout = "{TIMEOUT}s"
connect_timeout = "{TIMEOUT}s"
[backends.secondary]
url = "http://127.0.0.1:{secondary}"
[[routes]]
when = {{environment = "sandbox"}}
failover = ["primary", "secondary"]
"""


class Traffic:
    """GETs and POSTs with unique paths; labels say which upstream answered."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.numbers = itertools.count()
        self.lock = threading.Lock()

    def path(self, method: str) -> str:
        with self.lock:
            return f"/v1/{method.lower()}/{next(self.numbers)}"

    def send(self, method: str, do: str = "echo") -> str:
        headers = {**bearer(self.secret), "X-Upstream-Do": do}
        response = requests.request(method, self.url + self.path(method), headers=headers,
                                    data=b"x" * 100 if method == "POST" else None,
                                    timeout=60)
        if response.status_code == 200 and do.startswith(("echo", "sleep")):
            return f"{method} 200 {response.json()['name']}"
        return f"{method} {label(response)}"

    def download(self, do: str) -> str:
        """A body the upstream breaks off: ``short`` if it was passed off as complete."""
        response = requests.get(self.url + self.path("GET"), timeout=60,
                                headers={**bearer(self.secret), "X-Upstream-Do": do})
        if response.status_code != 200:
            return label(response)
        return "200 complete" if len(response.content) == 2 * DIE_AT else "200 short"

    def mixed(self) -> Callable[[], str]:
        methods = itertools.cycle(["GET", "GET", "POST"])
        return lambda: self.send(next(methods))


def test_a_failing_backend_never_gets_a_500_a_second_post_or_a_wrong_answer(
        tmp_path: Path, upstreams: dict[str, Upstream]) -> None:
    primary, secondary = upstreams["primary"], upstreams["secondary"]
    primary.reset()
    secondary.reset()
    figures: dict[str, Counter[str]] = {}
    with forwarding(primary.port) as forwarder, \
            gateway(tmp_path, config(tmp_path, forwarder.port, secondary.port)) as gw:
        store = SQLiteStore(f"sqlite:///{tmp_path / 'keys.db'}")
        secret = KeyManager(store, load_file(tmp_path / "envroute.toml")).create(
            "sandbox").secret
        store.close()
        traffic = Traffic(gw.url, secret)

        def phase(name: str, fault: Callable[[], None], request: Callable[[], str],
                  expected: dict[str, int], threads: int = WORKERS) -> None:
            with Load(request, threads=threads) as load:
                fault()
                for answer, count in expected.items():
                    load.wait_for(answer, count, f"{name}: {count} more {answer}")
                forwarder.restore()
            figures[name] = load.counts
            assert load.slowest < TIMEOUT * 2 + SLACK, f"{name}: {load.slowest:.1f} s"

        phase("refused", forwarder.refuse, traffic.mixed(),
              {"GET 200 secondary": 6, f"POST {PROBLEM_502}": 3})
        phase("black-holed", forwarder.blackhole, traffic.mixed(),
              {"GET 504 backend_timeout": 3, "POST 504 backend_timeout": 3})
        methods = itertools.cycle(["GET", "POST"])
        with Load(lambda: traffic.send(next(methods), "sleep:0.2"), threads=WORKERS) as load:
            deadline = time.monotonic() + 60
            while (load.count(f"POST {PROBLEM_502}") < 3  # keep killing requests in flight
                   or load.count("GET 200 secondary") < 3):
                load.wait_for("GET 200 primary", 1, "a request served between resets")
                forwarder.reset()
                assert time.monotonic() < deadline, f"resets in flight: {load.counts}"
        figures["reset in flight"] = load.counts
        phase("dead after its head", lambda: None,
              lambda: traffic.send("GET", "headdie:close@primary"), {f"GET {PROBLEM_502}": 6})
        phase("reset after its head", lambda: None,
              lambda: traffic.send("GET", "headdie:reset@primary"), {f"GET {PROBLEM_502}": 6})
        phase("dead mid-body", lambda: None, lambda: traffic.download(f"die:{DIE_AT}@primary"),
              {"error ChunkedEncodingError": 6})
        phase("dead mid-chunked-body", lambda: None,
              lambda: traffic.download("diechunked@primary"),
              {"error ChunkedEncodingError": 6})
        phase("recovered", lambda: None, traffic.mixed(),
              {"GET 200 primary": 6, "POST 200 primary": 3})
        log = gw.read_log()

    print("\nbackend faults:", {name: dict(counts) for name, counts in figures.items()})
    allowed = {
        "refused": {"GET 200 primary", "POST 200 primary", "GET 200 secondary",
                    f"POST {PROBLEM_502}", f"GET {PROBLEM_502}"},
        "black-holed": {"GET 200 primary", "POST 200 primary", "GET 504 backend_timeout",
                        "POST 504 backend_timeout", "GET 200 secondary",
                        f"POST {PROBLEM_502}"},  # (in flight at restore: reset)
        "reset in flight": {"GET 200 primary", "GET 200 secondary", "POST 200 primary",
                            f"POST {PROBLEM_502}", f"GET {PROBLEM_502}"},  # (head came)
        "dead after its head": {f"GET {PROBLEM_502}"},
        "reset after its head": {f"GET {PROBLEM_502}"},
        "dead mid-body": {"error ChunkedEncodingError"},
        "dead mid-chunked-body": {"error ChunkedEncodingError"},
        "recovered": {"GET 200 primary", "POST 200 primary"},
    }
    for name, counts in figures.items():
        assert set(counts) <= allowed[name], (name, counts)
    posts = Counter(target for upstream in (primary, secondary)
                    for method, target in upstream.stats()["log"] if method == "POST")
    assert posts and max(posts.values()) == 1, "a POST was sent twice"
    assert not [t for m, t in secondary.stats()["log"] if m == "POST"], "POST failed over"
    assert "Internal Server Error" not in log, log[-3000:]
    # gunicorn prints a trace for each body the gateway cut short (its way to close the
    # connection); nothing else may have one
    assert log.count("Traceback") == log.count("BackendUnavailable: response broke off")
