"""Where a proxied request goes, and how URLs that name the backend come back.

The upstream URL is always the backend's own origin (validated once, at construction)
followed by a path this module encodes itself, so absolute-form request targets, ``//host``
paths, ``@``, ``%2F%2F``, backslashes, ``Host`` or ``X-Forwarded-Host`` cannot send a
request anywhere else. On the way back, URLs at the backend's host (``Location``,
``Content-Location``, ``Link``, ``Refresh``) become paths on the gateway, so no response
names the backend's host.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote, unquote_to_bytes, urlsplit

from ..errors import ConfigError
from ..settings import BackendSettings
from ..typing import WSGIEnvironment

#: RFC 3986 pchar without ``%`` (escapes are checked separately), and the query's extra.
PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = PATH_SAFE + "?"
_UNSAFE_PATH = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9%" + re.escape(PATH_SAFE) + "]")
_UNSAFE_QUERY = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9%" + re.escape(_QUERY_SAFE) + "]")
#: Every byte a request target may hold as it is (no ``%``: escapes take the general way).
_SAFE_TARGET = (string.ascii_letters + string.digits + _QUERY_SAFE).encode("ascii")
#: A percent-escape with a lower-case hex digit (RFC 3986 §6.2.2.1: upper-cased).
_LOWER_ESCAPE = re.compile(r"%(?:[a-f][0-9A-Fa-f]|[0-9A-F][a-f])")
_LEADING_SLASHES = re.compile(r"^[/\\]+")
#: ``Link: <uri>; rel=…`` (RFC 8288): every URI reference sits between angle brackets.
_LINK_TARGET = re.compile(r"<([^>]*)>")
#: ``Refresh: 5; url=http://…`` (HTML's pragma), with or without ``url=`` and quotes.
_REFRESH = re.compile(r"^(\s*[0-9.]*\s*[;,]\s*)(?:(url\s*=\s*)(['\"]?))?(.*?)(['\"]?)\s*$",
                      re.IGNORECASE | re.DOTALL)


def _escape(match: re.Match[str]) -> str:
    return quote(match.group().encode("latin-1", "surrogateescape"), safe="")


def _upper(match: re.Match[str]) -> str:
    return match.group().upper()


def _unquote(raw: str) -> str:
    """Percent-decoded as a WSGI server decodes ``PATH_INFO`` (bytes as latin-1)."""
    return unquote_to_bytes(raw).decode("latin-1")


def upstream_path(environ: WSGIEnvironment, strip_prefix: str = "") -> str:
    """The percent-encoded path to send upstream, before the backend URL's own path.

    The raw path from ``RAW_URI``/``REQUEST_URI`` is used when it decodes to exactly
    ``SCRIPT_NAME + PATH_INFO`` (so an absolute-form target or a rewritten ``PATH_INFO``
    falls back to re-quoting ``PATH_INFO``). ``SCRIPT_NAME`` and ``strip_prefix`` are cut
    at a segment boundary. The result always starts with ``/`` or is empty, and holds
    only characters valid in a URL path: ``?``, ``#``, ``\\`` and spaces are escaped.
    """
    script = environ.get("SCRIPT_NAME", "")
    path_info = environ.get("PATH_INFO", "")
    drop, rest = script, path_info
    if strip_prefix and (path_info == strip_prefix or path_info.startswith(strip_prefix + "/")):
        drop, rest = script + strip_prefix, path_info[len(strip_prefix):]
    raw = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").partition("?")[0]
    encoded: str | None = None
    if raw.startswith("/"):
        if "%" not in raw and "\\" not in raw:  # the common case: nothing to decode
            if raw == script + path_info:
                encoded = raw[len(drop):]
        elif _unquote(raw) == script + path_info:
            encoded = _raw_after(raw, drop)
    if encoded is None:
        encoded = quote(rest.encode("latin-1", "surrogateescape"), safe=PATH_SAFE)
    if _UNSAFE_PATH.search(encoded):
        encoded = _UNSAFE_PATH.sub(_escape, encoded)
    return encoded if not encoded or encoded.startswith("/") else "/" + encoded


def _raw_after(raw: str, decoded_prefix: str) -> str | None:
    """What follows the part of ``raw`` that decodes to ``decoded_prefix``, if any."""
    if not decoded_prefix:
        return raw
    for index in [i for i, c in enumerate(raw) if c == "/"] + [len(raw)]:
        if index and _unquote(raw[:index]) == decoded_prefix:
            return raw[index:]
    return None


def upstream_query(environ: WSGIEnvironment) -> str:
    """``QUERY_STRING`` as sent (after the gateway removed any credential), made URL-safe."""
    query: str = environ.get("QUERY_STRING", "")
    if query and _UNSAFE_QUERY.search(query):
        return _UNSAFE_QUERY.sub(_escape, query)
    return query


class Upstream:
    """One backend's fixed origin and base path; validated once, at construction."""

    __slots__ = ("_plain", "base_path", "hostname", "origin", "port", "scheme", "strip_prefix")

    def __init__(self, backend: BackendSettings) -> None:
        url = urlsplit(backend.url)
        key = f"backends.{backend.name}.url"
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{backend.url!r} is not an http:// or https:// URL", key=key)
        if url.username is not None or url.password is not None:
            raise ConfigError("credentials in a backend URL are not supported", key=key)
        if url.query or url.fragment:
            raise ConfigError("a backend URL takes no query string or fragment", key=key)
        try:
            port = url.port
        except ValueError:
            raise ConfigError(f"{backend.url!r} has an invalid port", key=key) from None
        self.scheme = url.scheme
        self.hostname = url.hostname
        self.port = port or (443 if url.scheme == "https" else 80)
        self.origin = f"{url.scheme}://{url.netloc}"
        self.base_path = quote(url.path.rstrip("/"), safe=PATH_SAFE + "%")
        self.strip_prefix = backend.strip_prefix
        # no prefix to strip, no escape in the base path: the usual request's shortcut
        self._plain = not self.strip_prefix and "%" not in self.base_path

    def target_for(self, environ: WSGIEnvironment) -> str:
        """The request target sent upstream: the backend URL's path, then the request's
        path, and the query string (the origin is the connection's own)."""
        raw: str | None = environ.get("RAW_URI")
        if raw and self._plain and not environ.get("SCRIPT_NAME"):
            # The usual request: the raw target is PATH_INFO and QUERY_STRING as they are,
            # every character one a URL keeps: what the general way below would send.
            path, _, query = raw.partition("?")
            if (path == environ.get("PATH_INFO") and query == environ.get("QUERY_STRING", "")
                    and path[:1] == "/" and raw.isascii()
                    and not raw.encode("ascii").translate(None, _SAFE_TARGET)):
                return self.base_path + raw if query else self.base_path + path
        path = self.base_path + upstream_path(environ, self.strip_prefix)
        query = upstream_query(environ)
        target = (path or "/") + (f"?{query}" if query else "")
        if "%" in target and _LOWER_ESCAPE.search(target):
            target = _LOWER_ESCAPE.sub(_upper, target)
        return target

    def url_for(self, environ: WSGIEnvironment) -> str:
        """The upstream URL: the backend's origin and path fixed, then the request's path."""
        return self.origin + self.target_for(environ)

    # -- the way back -------------------------------------------------------------------

    def rewrite_url(self, location: str, environ: WSGIEnvironment) -> str:
        """A URL into this backend, as a path on the gateway; others unchanged.

        Absolute URLs at the backend's host (any scheme or port) and paths under the
        backend URL's path are mapped back under ``SCRIPT_NAME`` and ``strip_prefix``.
        The result never starts with ``//`` or ``/\\``, which browsers would read as
        another host.
        """
        try:
            parts = urlsplit(location)
        except ValueError:
            return location
        if parts.netloc:
            # The backend's host, whatever the scheme or port, is the backend: one told
            # ``X-Forwarded-Proto: https`` builds ``https://`` URLs with the ``Host`` it
            # was sent (its own), and no caller can reach a backend's host anyway.
            if parts.hostname != self.hostname:
                return location
        elif parts.scheme or not parts.path.startswith("/"):
            return location
        path = parts.path
        base = self.base_path
        prefix = environ.get("SCRIPT_NAME", "") + self.strip_prefix
        if base and (path == base or path.startswith(base + "/")):
            path = prefix + path[len(base):]
        elif not base:
            path = prefix + path
        path = _LEADING_SLASHES.sub("/", path) or "/"
        return path + (f"?{parts.query}" if parts.query else "") + (
            f"#{parts.fragment}" if parts.fragment else "")

    def names_backend(self, value: str) -> bool:
        """Whether a header value still holds the backend's host as a URL authority."""
        lowered = value.lower()
        return f"//{self.hostname}".lower() in lowered

    def rewrite_header(self, lower_name: str, value: str,
                       environ: WSGIEnvironment) -> str | None:
        """A response header that may name the backend, rewritten; None: drop it."""
        if lower_name in ("location", "content-location"):
            value = self.rewrite_url(value, environ)
            if lower_name == "location":
                return value
        elif lower_name == "link":
            value = _LINK_TARGET.sub(
                lambda m: f"<{self.rewrite_url(m.group(1), environ)}>", value)
        elif lower_name == "refresh":
            match = _REFRESH.match(value)
            if match is not None and match.group(4):
                delay, label, quote_, url, _ = match.groups()
                value = (f"{delay}{label or ''}{quote_ or ''}"
                         f"{self.rewrite_url(url, environ)}{quote_ or ''}")
        return None if self.names_backend(value) else value

