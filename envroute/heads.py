"""A backend's response head checked as gunicorn checks it, before the gateway passes it on.

An in-process backend may hand ``start_response`` anything; a status line or a header the
server would refuse must be the gateway's ``502 backend_unavailable``, never the server's
``500`` after the head went out (PEP 3333's error path, :mod:`envroute.exchange`). The
checks are regexes (RFC 9110 tokens for names, printable values); the status lines and
header names that passed are remembered in :data:`GOOD_STATUS` and :data:`GOOD_NAMES`, so
after a backend's first requests each check is a set look-up (issue 14: five regex
matches were ~5% of a cached request's cost). Both sets are bounded: a backend inventing
names cannot grow them, and past the bound the regex runs. ``Request-Id`` is never
remembered: the gateway sets it itself and drops the backend's.
"""

from __future__ import annotations

import re

from .errors import BackendError
from .typing import HeaderList

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")
_STATUS = re.compile(r"[1-5][0-9]{2}(?: [ \t\x21-\x7e\x80-\xff]*)?")
#: Status lines that passed :func:`good_status`, with their status code.
GOOD_STATUS: dict[str, int] = {}
#: Header names that passed :func:`checked_headers` (never ``Request-Id``).
GOOD_NAMES: set[str] = set()
_GOOD_MAX = 1024


def _good(text: object, pattern: re.Pattern[str], good: set[str]) -> bool:
    """``text`` is a str that ``pattern`` matches whole; remembered in ``good``."""
    if not (isinstance(text, str) and pattern.fullmatch(text)):
        return False
    if len(good) < _GOOD_MAX and text.lower() != "request-id":
        good.add(text)
    return True


def good_status(status: object) -> int | None:
    """The code of a status line gunicorn would send (``"200 OK"``: 200), else None; the
    request path looks in :data:`GOOD_STATUS` first."""
    if not (isinstance(status, str) and _STATUS.fullmatch(status)):
        return None
    code = int(status[:3])
    if len(GOOD_STATUS) < _GOOD_MAX:
        GOOD_STATUS[status] = code
    return code


def checked_headers(headers: HeaderList, backend: str) -> HeaderList:
    """``headers`` checked one by one, ``Request-Id`` dropped; :class:`BackendError` for the
    first a server would refuse (named, never its value). The request path tries a faster
    loop over :data:`GOOD_NAMES` and printable ASCII first."""
    checked: HeaderList = []
    for name, value in headers:
        if not _good(name, _TOKEN, GOOD_NAMES) or not (
                isinstance(value, str) and _VALUE.fullmatch(value) is not None):
            raise BackendError(f"invalid response header {name!r}", backend=backend)
        if name.lower() != "request-id":
            checked.append((name, value))
    return checked
