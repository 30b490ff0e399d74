"""Fault injection for the tests of issue 16: a forwarder that fails on command, and load.

:class:`Forwarder` sits between the gateway and PostgreSQL, Redis or a backend, on a port
of its own, so a test can make that dependency fail without touching the shared server:

- ``reset()``: every open connection is reset (RST), as a restarted server does;
- ``refuse()``: nothing listens on the port (connection refused), until ``restore()``;
- ``blackhole()``: connections are accepted and bytes are taken, but nothing is forwarded
  and nothing answered (a hung server, a firewall dropping packets), until ``restore()``;
- ``restore()``: forward again (connections that were black-holed are reset, so their
  clients notice).

:class:`Load` runs a request function on several threads until stopped and counts what
came back by answer (``"200"``, ``"503 store_unavailable"``, ``"error ConnectionError"``),
with the slowest answer, so a test can state what every request under a fault got.

Risk: the forwarder is threads in the test process; a test that forgets ``close()`` leaks
them (the context manager closes). Nothing here sleeps for a fixed time to "let a fault
happen": tests wait for conditions with :func:`wait_until`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Literal

from tests.support.processes import free_port

Mode = Literal["forward", "blackhole", "refuse"]
_LINGER_RESET = struct.pack("ii", 1, 0)


def hard_close(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (SO_LINGER 0), as a crashed or restarted peer does.

    ``shutdown(SHUT_RD)`` first wakes the pump thread blocked in ``recv`` on it: until that
    call returns the kernel keeps the socket, and a ``close()`` alone sends nothing.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class Forwarder:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``; fails on command."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode: Mode = "forward"
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Forwarder:
        self._listen()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------------

    def reset(self) -> None:
        """Reset every open connection; new ones are served as the mode says."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            hard_close(client)
            if upstream is not None:
                hard_close(upstream)

    def refuse(self) -> None:
        """Reset everything open and stop listening: connecting is refused."""
        self.mode = "refuse"
        self._unlisten()
        self.reset()

    def blackhole(self) -> None:
        """Keep every connection open, forward nothing either way, answer nothing."""
        self.mode = "blackhole"

    def restore(self) -> None:
        was = self.mode
        self.mode = "forward"
        if was == "blackhole":
            self.reset()  # the hung connections' clients notice now, not at their timeout
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.mode = "refuse"
        self._unlisten()
        self.reset()

    # -- machinery ------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:  # the port was ours a moment ago; a closing socket may still hold it
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the accepting thread (Linux)
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            upstream: socket.socket | None = None
            if self.mode == "forward":
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port))
                except OSError:
                    hard_close(client)
                    continue
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                if source is not None:
                    threading.Thread(target=self._pump, args=(source, sink),
                                     daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):
                if sink is not None and self.mode == "forward":
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0,
               every: float = 0.05) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)


class Load:
    """``request()`` on ``threads`` threads until :meth:`stop`; answers counted by label.

    ``request`` returns the answer's label (e.g. ``"503 store_unavailable"``); an exception
    is counted as ``"error <type>"``. ``slowest`` is the longest single answer in seconds.
    """

    def __init__(self, request: Callable[[], str], threads: int = 4) -> None:
        self.request = request
        self.counts: Counter[str] = Counter()
        self.slowest = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Counter[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.snapshot()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def count(self, label: str) -> int:
        with self._lock:
            return self.counts[label]

    def wait_for(self, label: str, more: int, what: str, timeout: float = 60.0) -> None:
        """Wait until ``more`` answers labelled ``label`` came after this call."""
        target = self.count(label) + more
        wait_until(lambda: self.count(label) >= target, what, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                label = self.request()
            except Exception as exc:  # a dropped connection is an answer to count too
                label = f"error {type(exc).__name__}"
            elapsed = time.monotonic() - started
            with self._lock:
                self.counts[label] += 1
                self.slowest = max(self.slowest, elapsed)


@contextlib.contextmanager
def forwarding(target_port: int) -> Iterator[Forwarder]:
    with Forwarder(target_port) as forwarder:
        yield forwarder
