"""Signing keys from a JWKS URL, for :mod:`envroute.tokens`, and the check of that URL.

A JWKS is fetched on first use, cached (``JWKS_LIFESPAN``), and fetched again when a
token names an unknown ``kid`` (key rotation), at most once a minute
(``JWKS_REFETCH_SECONDS``), so a stream of made-up ``kid`` values cannot flood the
identity provider. When the JWKS cannot be fetched, or answers something that is not a
key set, and no cached key set is at hand, :class:`StoreUnavailable` makes the gateway
fail closed with 503 ``store_unavailable`` rather than 401: the token may well be good,
the caller should retry, and a client must not throw away a valid token because the
identity provider had an outage. Failed fetches are retried at most every
``JWKS_RETRY_SECONDS``, answering 503 at once meanwhile.

:meth:`JwksKeys.reach` is ``envroute check``'s look at the same URL: fetched now, it must
hold signing keys for the configured algorithms, or every token would be refused.

Risk: the URL may carry an access token in its query string (or a password): it is named
in logs, errors and ``check`` without them (:func:`envroute.urls.redact_url`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWKSetError

from .errors import StoreUnavailable
from .problems import Problem
from .urls import redact_url

logger = logging.getLogger("envroute")

#: How long a fetched JWKS is trusted before it is fetched again on the next token.
JWKS_LIFESPAN = 300.0
#: An unknown ``kid`` fetches the JWKS again at most this often (contract §4).
JWKS_REFETCH_SECONDS = 60.0
#: After a failed fetch, answer 503 without trying again for this long.
JWKS_RETRY_SECONDS = 5.0
#: Seconds for each step of a fetch (connecting, each read), so a hung identity provider
#: costs a request (or ``envroute check``) a few seconds, never a hung worker.
JWKS_TIMEOUT = 5.0


class JwksKeys:
    """Signing keys from a JWKS URL through :class:`jwt.PyJWKClient`, rate-limited."""

    def __init__(self, url: str, *, refetch_interval: float | None = None) -> None:
        # PyJWKClient's own cooldown is off: the rate limit below also covers failed
        # fetches, which PyJWKClient would retry on every request.
        self.client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=JWKS_LIFESPAN,
                                      timeout=JWKS_TIMEOUT, cooldown_duration=0)
        self.url = redact_url(url, drop_query=True)  # for messages: no token, no password
        parts = urlsplit(url)
        #: what a library's message must never repeat
        self._hidden = [text for text in (parts.password, parts.query, parts.fragment)
                        if text]
        self.refetch_interval = (JWKS_REFETCH_SECONDS if refetch_interval is None
                                 else refetch_interval)
        self._next_refetch = 0.0
        self._failed_until = 0.0
        self._lock = threading.Lock()

    def _signing_keys(self, refresh: bool = False) -> list[PyJWK]:
        now = time.monotonic()
        cache = self.client.jwk_set_cache
        fresh = cache is not None and cache.get() is not None
        if (refresh or not fresh) and now < self._failed_until:
            raise StoreUnavailable(f"the JWKS at {self.url} could not be fetched recently")
        try:
            return self.client.get_signing_keys(refresh=refresh)
        except PyJWKClientConnectionError:
            self._failed_until = now + JWKS_RETRY_SECONDS
            # PyJWT's message may repeat the URL, query string and all: never passed on
            raise StoreUnavailable(f"the JWKS at {self.url} cannot be fetched") from None
        except (PyJWKClientError, PyJWKSetError, ValueError):
            # ValueError: a body that is not JSON (an HTML error page answered 200), which
            # PyJWT lets through as json's own error: without it, a 502 and a traceback
            self._failed_until = now + JWKS_RETRY_SECONDS
            raise StoreUnavailable(f"the JWKS at {self.url} is unusable") from None

    def key_for(self, header: Mapping[str, Any]) -> PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Problem("invalid_token", "the token's header names no key (kid)")
        with self._lock:
            match = jwt.PyJWKClient.match_kid(self._signing_keys(), kid)
            if match is None and time.monotonic() >= self._next_refetch:
                self._next_refetch = time.monotonic() + self.refetch_interval
                logger.info("JWT names unknown kid %r; fetching the JWKS again", kid[:64])
                match = jwt.PyJWKClient.match_kid(self._signing_keys(refresh=True), kid)
        if match is None:
            raise Problem("invalid_token",
                          "the token's key (kid) is not one the identity provider publishes")
        return match

    def reach(self, algorithms: Sequence[str]) -> str:
        """Fetch the key set now (no cache, no retry pause) and describe it in one line.

        For ``envroute check``: raises :class:`StoreUnavailable` naming the cause when the
        URL cannot be fetched, answers something that is not a key set with signing keys
        (an error page, a 404, JSON of another shape), or holds no key for any of
        ``algorithms``: a token is only checked with a key bound to its algorithm (the
        JWK's ``alg``, else its key type's default), so each case refuses every token.
        """
        try:
            keys = self.client.get_signing_keys(refresh=True)
        except PyJWKClientConnectionError as exc:
            raise StoreUnavailable(f"cannot be fetched: {self._scrub(_cause(exc))}") from None
        except (PyJWKClientError, PyJWKSetError) as exc:
            raise StoreUnavailable(f"not a key set: {self._scrub(str(exc))}") from None
        except ValueError as exc:  # json's: the body is not JSON
            raise StoreUnavailable(f"not a key set: the answer is not JSON ({exc})") from None
        named = sorted({key.algorithm_name for key in keys})
        usable = sum(key.algorithm_name in algorithms for key in keys)
        counted = f"{len(keys)} signing key{'s' if len(keys) != 1 else ''}"
        if not usable:
            raise StoreUnavailable(f"{counted} ({', '.join(named)}), none for the configured "
                                   f"algorithms ({', '.join(algorithms)}): every token "
                                   "would be refused")
        if usable < len(keys):
            return (f"{counted} ({', '.join(named)}), {usable} for the configured "
                    f"algorithms")
        return f"{counted} ({', '.join(named)})"

    def _scrub(self, text: str) -> str:
        for hidden in self._hidden:
            text = text.replace(hidden, "***")
        return text


def _cause(exc: PyJWKClientConnectionError) -> str:
    """What went wrong under PyJWT's "Fail to fetch data from the url" (its message)."""
    cause = exc.__cause__
    if isinstance(cause, HTTPError):
        moved = " (redirects are not followed)" if 300 <= cause.code < 400 else ""
        return f"HTTP {cause.code} {cause.reason}{moved}"
    reason: object = cause.reason if isinstance(cause, URLError) else cause
    if isinstance(reason, TimeoutError):
        return f"no answer within {JWKS_TIMEOUT:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror  # "Connection refused", "Name or service not known"
    if reason is None:
        return str(exc)
    return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
