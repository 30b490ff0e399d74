"""The access log (one line per request on ``envroute.access``) and outage reports.

Every request the gateway sees is logged exactly once, when its response is closed (or at
once for a refusal), with the contract's fields (§8): request id, key id, environment,
customer id, backend, method, path, status, problem code and duration. The line is the
log record's message, so any handler prints it; the same fields are on the record as
attributes (``record.key_id`` …) for structured handlers.

``[logging] access = true`` (the default) adds a stderr handler at start-up when
``envroute.access`` has no handler anywhere up its hierarchy (``Logger.hasHandlers``), so
the lines appear under gunicorn, ``envroute serve`` and ``flask run`` with no logging set
up; ``format = "json"`` makes each line one JSON object. ``access = false`` leaves logging
alone entirely.

Security: a caller controls the path and, through a token, a key id or customer id. Every
field is escaped (control characters, including CR, LF, NUL, C1 and the Unicode line
separators, become ``\\xNN``/``\\uNNNN``; a backslash is doubled), so no caller can split a
line or forge one. Secrets never reach this module: an identity holds none.

Outages: while a store is down every cache-missing request is refused with 503; logging
each would drown the log (0.1 wrote 531 lines in 3 s). :class:`OutageLog` reports an
outage once when it starts, a running count at most once a minute, and once when it ends.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any

from .identity import Identity
from .settings import LoggingSettings

access_logger = logging.getLogger("envroute.access")
logger = logging.getLogger("envroute")

#: Marks the stderr handler envroute adds, so it is added once per process.
_HANDLER_NAME = "envroute.access.stderr"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029]")


def escape_char(match: re.Match[str]) -> str:
    """One matched character escaped: a backslash doubled, any other as ``\\xNN`` or
    ``\\uNNNN``. Command output (:func:`envroute.commandtools.escape`) uses it too."""
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: str) -> str:
    """``value`` with every character that could split or forge a log line escaped."""
    if _UNSAFE.search(value) is None:  # nearly always: no replacement to build
        return value
    return _UNSAFE.sub(escape_char, value)


def wsgi_path(raw: str) -> str:
    """A PEP 3333 path (bytes decoded as latin-1) as text: UTF-8 where it is UTF-8."""
    try:
        return raw.encode("latin-1").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return raw


def install(settings: LoggingSettings) -> None:
    """Honour ``[logging]``: a stderr handler for access lines when none would show them."""
    if not settings.access or access_logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(handler)
    if access_logger.level == logging.NOTSET or access_logger.level > logging.INFO:
        access_logger.setLevel(logging.INFO)


class AccessLog:
    """Writes the access line of a request, as text or JSON (``[logging] format``)."""

    def __init__(self, settings: LoggingSettings) -> None:
        self.json = settings.format == "json"

    def write(self, *, request_id: str, identity: Identity | None, backend: str | None,
              method: str, path: str, status: int, code: str | None,
              duration_ms: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "request_id": escape(request_id),
            "key_id": escape(identity.key_id) if identity else None,
            "environment": escape(identity.environment) if identity else None,
            "customer_id": (escape(identity.customer_id)
                            if identity and identity.customer_id else None),
            "backend": escape(backend) if backend else None,
            "method": escape(method),
            "path": escape(wsgi_path(path)),
            "status": status,
            "code": code,
            "duration_ms": round(duration_ms, 3),
        }
        if self.json:
            message = json.dumps(fields, separators=(",", ":"))
        else:
            message = ("{request_id} key={key} env={env} customer={customer} "
                       "backend={backend} {method} {path} {status} code={code} "
                       "{duration:.1f}ms").format(
                request_id=fields["request_id"], key=fields["key_id"] or "-",
                env=fields["environment"] or "-", customer=fields["customer_id"] or "-",
                backend=fields["backend"] or "-", method=fields["method"],
                path=fields["path"].replace(" ", "%20") or "/", status=status,
                code=code or "-", duration=duration_ms)
        # makeRecord + handle: what Logger.info does, minus the caller look-up (a stack
        # walk per request, for a line whose caller is always this one)
        access_logger.handle(access_logger.makeRecord(
            access_logger.name, logging.INFO, __file__, 0, message, (), None, extra=fields))


class OutageLog:
    """Reports a store outage once when it starts, a count while it lasts, once at its end.

    :meth:`failed` is called for every request refused because a store is unreachable,
    :meth:`admitted` for every request that passed authentication and policies. An outage
    ends at the first admitted request a quiet second after the last refusal (a request
    served from the key cache alone proves nothing while refusals keep coming).
    """

    #: seconds between "still unavailable" lines while an outage lasts
    REPORT_EVERY = 60.0
    #: seconds without a refusal before an admitted request ends the outage
    QUIET = 1.0

    def __init__(self, subject: str = "store",
                 effect: str = "refusing requests that need it with 503 until it answers",
                 outcome: str = "refused with 503") -> None:
        #: what is down, what requests get meanwhile, what the count counts (the rate
        #: limiter's ``on_storage_error = "allow"`` reports requests let through unlimited)
        self.subject, self.effect, self.outcome = subject, effect, outcome
        self._lock = threading.Lock()
        #: when the current outage began (None: no outage); the request path reads it
        self.down_since: float | None = None
        self._last_failure = 0.0
        self._last_report = 0.0
        self._count = 0

    def failed(self, reason: object) -> None:
        now = time.monotonic()
        with self._lock:
            self._count += 1
            self._last_failure = now
            if self.down_since is None:
                self.down_since = self._last_report = now
                self._count = 1
                logger.error("%s unavailable: %s; %s", self.subject, escape(str(reason)),
                             self.effect)
            elif now - self._last_report >= self.REPORT_EVERY:
                self._last_report = now
                logger.error("%s still unavailable: %d requests %s in %.0f s "
                             "(last cause: %s)", self.subject, self._count, self.outcome,
                             now - self.down_since, escape(str(reason)))

    def admitted(self) -> None:
        if self.down_since is None:  # the hot path: one attribute read
            return
        now = time.monotonic()
        with self._lock:
            since = self.down_since
            if since is None or now - self._last_failure < self.QUIET:
                return
            self.down_since = None
            logger.warning("%s available again after %.1f s; %d requests were %s "
                           "during the outage", self.subject, self._last_failure - since,
                           self._count, self.outcome)
