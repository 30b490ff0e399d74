"""Prometheus metrics (extra ``metrics``): what the gateway did, for dashboards and alerts.

``[metrics] path = "/metrics"`` turns them on; the gateway then answers ``GET`` (and
``HEAD``) of that exact path itself with a Prometheus text exposition, with no credential,
or only with ``Authorization: Bearer <token>`` when ``[metrics] token`` is set. That request
reaches no backend and, like the health path, is not counted.

The series (docs/metrics.md has PromQL and a Grafana dashboard):

- ``envroute_requests_total{environment,backend,code}``: ``code`` is the problem code of a
  refusal (``rate_limited``, ``invalid_key``, ...) or ``ok`` when a backend answered;
- ``envroute_responses_total{environment,backend,status}``: ``status`` is the class of the
  HTTP status sent (``2xx`` ... ``5xx``), so a backend's own 5xx shows in an error ratio;
- ``envroute_request_duration_seconds{environment,backend}``: until the response is closed;
- ``envroute_upstream_duration_seconds{backend}``: a URL backend, until its headers arrive;
- ``envroute_auth_cache_total{result}`` (``hit``, ``miss``), ``envroute_store_errors_total``.

``environment`` and ``backend`` are ``-`` before they are known. Labels are bounded sets
(configured environments, backends and problem codes): a key id or customer id is never a
label, since every key would become a series and a scrape would grow without bound. As a
second guard, past :data:`MAX_SERIES` label sets new ones are counted under ``other``.

The core never imports prometheus_client: only :func:`enable`, called when ``[metrics]
path`` is set, does, after :mod:`envroute.metricsdir` has set ``PROMETHEUS_MULTIPROC_DIR``
so that one scrape covers every gunicorn worker. Until then the recording functions below
are a global look-up and a ``None`` test, so call sites cost nothing with metrics off.
"""

from __future__ import annotations

import atexit
import bisect
import hmac
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Literal

from . import metricsdir
from .errors import ConfigError
from .ownpaths import Answer
from .problems import Problem
from .settings import MetricsSettings
from .typing import WSGIEnvironment

logger = logging.getLogger("envroute")

#: Seconds; from a cached-key refusal (~50 µs) to a slow upstream (the proxy's timeouts).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)
#: Distinct label sets per metric before new ones are folded into ``other``.
MAX_SERIES = 2000
#: How often each process moves its buffered counts into the shared files.
FLUSH_SECONDS = 1.0
UNKNOWN = "-"
OVERFLOW = "other"
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Recorder:
    """The process's instruments, fed from events buffered in memory.

    Writing a multiprocess value costs ~1 µs (a lock, a pid check, a write to the mapped
    file) and a request makes four. So a request only appends one tuple to :attr:`events`
    (a deque: ``append`` and ``popleft`` are atomic, no lock needed, nothing lost between
    threads), and :meth:`flush` adds them up and moves the sums into prometheus_client every
    :data:`FLUSH_SECONDS` (a daemon thread per process), before this process renders a
    scrape, and at exit. The risk: another worker's last second is not yet in a scrape, and
    a worker killed with SIGKILL loses it; totals never go down.

    One recorder per process: two value objects for the same series in multiprocess mode
    would overwrite each other's counts in the shared file.
    """

    def __init__(self, directory: str) -> None:
        from prometheus_client import Counter, Histogram, values

        if not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client was imported before the variable was set (by the app):
            # switch it, or each worker would answer only for itself.
            logger.warning("prometheus_client was imported before envroute set %s; "
                           "switching it to multiprocess mode (%s)", metricsdir.ENV_VAR,
                           directory)
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        self.directory = directory
        self.metrics: dict[str, Any] = {
            "requests": Counter("envroute_requests", "Requests, by outcome",
                                ("environment", "backend", "code"), registry=None),
            "responses": Counter("envroute_responses", "Responses, by HTTP status class",
                                 ("environment", "backend", "status"), registry=None),
            "duration": Histogram("envroute_request_duration_seconds",
                                  "Time from a request's arrival until its response closed",
                                  ("environment", "backend"), buckets=BUCKETS, registry=None),
            "upstream": Histogram("envroute_upstream_duration_seconds",
                                  "Time a URL backend took to send its response headers",
                                  ("backend",), buckets=BUCKETS, registry=None),
            "auth_cache": Counter("envroute_auth_cache", "API-key verdicts by cache result",
                                  ("result",), registry=None),
            "store_errors": Counter("envroute_store_errors",
                                    "Requests refused because a store was unavailable",
                                    registry=None),
        }
        self.metrics["store_errors"].inc(0)  # a series from the start, for rate() and alerts
        #: (environment, backend, code, seconds, status) for a request; (metric, *labels)
        #: for a counter; (metric, label, seconds) for the upstream histogram
        self.events: deque[tuple[Any, ...]] = deque()
        self.flusher = False
        self._children: dict[tuple[str, ...], Any] = {}
        self._flushing = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(self.flush)

    def flush(self) -> None:
        """Add up the buffered events and move the sums into prometheus_client's files."""
        with self._flushing:
            counts: dict[tuple[str, ...], float] = {}
            histograms: dict[tuple[str, ...], list[float]] = {}
            events = self.events
            for _ in range(len(events)):  # only what is there now; later ones wait
                event = events.popleft()
                if len(event) == 5:
                    environment, backend, code, seconds, status = event
                    counted: tuple[str, ...] = ("requests", environment, backend, code)
                    counts[counted] = counts.get(counted, 0) + 1
                    counted = ("responses", environment, backend, _STATUS_CLASSES.get(
                        status // 100, UNKNOWN))
                    counts[counted] = counts.get(counted, 0) + 1
                    self._add(histograms, ("duration", environment, backend), seconds)
                elif len(event) == 3:
                    self._add(histograms, event[:2], event[2])
                else:
                    counts[event] = counts.get(event, 0) + 1
            for series, count in counts.items():
                self._child(series).inc(count)
            for series, sums in histograms.items():
                child = self._child(series)
                child._sum.inc(sums[0])
                for bucket, count in zip(child._buckets, sums[1:], strict=True):
                    if count:
                        bucket.inc(count)

    @staticmethod
    def _add(histograms: dict[tuple[str, ...], list[float]], key: tuple[str, ...],
             seconds: float) -> None:
        sums = histograms.get(key)
        if sums is None:  # [sum, one count per bucket and +Inf]
            sums = histograms[key] = [0.0] * (len(BUCKETS) + 2)
        sums[0] += seconds
        sums[bisect.bisect_left(BUCKETS, seconds) + 1] += 1  # the first bound >= seconds

    def _child(self, key: tuple[str, ...]) -> Any:
        found = self._children.get(key)
        if found is None:
            if len(self._children) >= MAX_SERIES:  # a label went unbounded: fold it
                key = (key[0], *(OVERFLOW for _ in key[1:]))
            metric = self.metrics[key[0]]
            found = self._children.get(key) or (metric.labels(*key[1:]) if key[1:] else metric)
            self._children[key] = found
        return found

    def start_flusher(self) -> None:
        self.flusher = True
        threading.Thread(target=self._flush_forever, name="envroute-metrics",
                         daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # never let the thread die; the next flush retries
                logger.exception("could not write metrics to %s", self.directory)

    def _forked(self) -> None:
        """In a new worker: its parent's buffered events are the parent's to write."""
        self.events = deque()
        self._flushing = threading.Lock()
        self.flusher = False

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        self.flush()
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=self.directory)
        return generate_latest(registry)


_recorder: _Recorder | None = None
_setup = threading.Lock()
#: True once this process records metrics: the request path tests it before calling in
on = False


def enable(settings: MetricsSettings) -> MetricsEndpoint | None:
    """The endpoint of ``[metrics] path``, recording on from now on; None when it is off.

    Raises :class:`ConfigError` when the ``metrics`` extra is not installed, so a gateway
    configured for metrics refuses to start rather than serving without them.
    """
    global _recorder, on
    if not settings.path:
        return None
    with _setup:
        if _recorder is None:
            directory = metricsdir.prepare()  # before the first import of prometheus_client
            try:
                _recorder = _Recorder(directory)
            except ImportError:
                raise ConfigError("needs the metrics extra: pip install 'envroute[metrics]'",
                                  key="metrics.path") from None
            on = True
    return MetricsEndpoint(settings, _recorder)


# -- recording: one call at each place something happens; no-ops while metrics are off ----

def observe_request(environment: str | None, backend: str | None, code: str,
                    seconds: float, status: int = 0) -> None:
    """One finished request: ``code`` is the problem code, or ``"ok"`` when a backend
    answered; ``status`` is the HTTP status sent (0 if the response never started)."""
    recorder = _recorder
    if recorder is not None:
        recorder.events.append((environment or UNKNOWN, backend or UNKNOWN, code, seconds,
                                status))
        if not recorder.flusher:
            recorder.start_flusher()


def observe_upstream(backend: str, seconds: float) -> None:
    """A URL backend's response headers arrived ``seconds`` after the request was sent."""
    recorder = _recorder
    if recorder is not None:
        recorder.events.append(("upstream", backend, seconds))


def auth_cache(result: Literal["hit", "miss"]) -> None:
    """The API-key verifier found a cached verdict (``hit``) or asked the store (``miss``)."""
    recorder = _recorder
    if recorder is not None:
        recorder.events.append(_HIT if result == "hit" else _MISS)


def store_error() -> None:
    """A request failed because a store (keys, rate limits, token keys) was unavailable."""
    recorder = _recorder
    if recorder is not None:
        recorder.events.append(_STORE_ERROR)


_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
_HIT, _MISS, _STORE_ERROR = ("auth_cache", "hit"), ("auth_cache", "miss"), ("store_errors",)


class MetricsEndpoint:
    """The metrics path's answer, registered with the gateway's own paths
    (:mod:`envroute.ownpaths`): matched before any credential is read, never routed."""

    def __init__(self, settings: MetricsSettings, recorder: _Recorder) -> None:
        self.path = settings.path
        self._token = settings.token.encode()
        self._recorder = recorder

    def answer(self, environ: WSGIEnvironment) -> Answer:
        """The exposition, or :class:`Problem` (401) when a token is set and not sent."""
        refusal = self.refusal(environ)
        if refusal is not None:
            raise refusal
        body = self._recorder.render()
        return Answer(200, [("Content-Type", TEXT_CONTENT_TYPE),
                            ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")], body)

    def refusal(self, environ: WSGIEnvironment) -> Problem | None:
        """401 unless the token matches (compared in constant time); None when admitted."""
        if not self._token:
            return None
        scheme, _, sent = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        if scheme.lower() != "bearer":  # none, Basic, or an API key in another header
            return Problem("missing_credentials",
                           "the metrics path needs Authorization: Bearer <metrics token>")
        if hmac.compare_digest(sent.strip().encode("utf-8", "surrogateescape"), self._token):
            return None
        # §17: anything but the token is 401 missing_credentials (not invalid_token, a
        # JWT's refusal): the credential this path needs was not sent
        return Problem("missing_credentials", "this is not the metrics token")
