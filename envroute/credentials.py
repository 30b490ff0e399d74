"""Finding the caller's credential in a request, and removing it before forwarding.

Accepted, in this order: ``Authorization: Bearer <key or JWT>``, ``Authorization: Basic``
with the key as user name (``curl -u sk_test_…:``), the configured header (default
``X-API-Key``), and, only when ``[auth] query_param`` is set, a query-string parameter
(off by default because query strings end up in access logs).
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from typing import Literal, NamedTuple
from urllib.parse import parse_qsl, unquote_plus

from .problems import Problem
from .settings import AuthSettings
from .typing import WSGIEnvironment

Where = Literal["bearer", "basic", "header", "query"]

#: A bearer value of three dot-separated base64url parts is a JWT (contract §4).
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class Credential(NamedTuple):
    """The credential as sent, and where it was found (a tuple: built on every request)."""

    value: str
    where: Where

    @property
    def is_jwt(self) -> bool:
        value = self.value
        return (self.where == "bearer" and value.count(".") == 2
                and _JWT_SHAPE.match(value) is not None)


class CredentialReader:
    """Reads and strips credentials as ``[auth]`` configures; built once at start-up."""

    def __init__(self, auth: AuthSettings) -> None:
        self.header_key = "HTTP_" + auth.header.upper().replace("-", "_")
        self.query_param = auth.query_param

    def read(self, environ: WSGIEnvironment) -> Credential:
        """The request's credential; ``missing_credentials`` or ``invalid_key`` if unusable."""
        authorization = environ.get("HTTP_AUTHORIZATION")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            scheme = scheme.lower()
            value = value.strip()
            if scheme == "bearer" and value:
                return Credential(value, "bearer")
            if scheme == "basic" and value:
                return Credential(_basic_user(value), "basic")
        value = environ.get(self.header_key, "").strip()
        if value:
            return Credential(value, "header")
        if self.query_param:
            for name, found in parse_qsl(environ.get("QUERY_STRING", "")):
                if name == self.query_param and found:
                    return Credential(found, "query")
        raise Problem("missing_credentials", "send an API key as 'Authorization: Bearer <key>'"
                      " (or Basic with the key as user name, or the API key header)")

    def strip(self, environ: WSGIEnvironment, credential: Credential) -> None:
        """Remove the credential from the environ so no backend ever receives it.

        The risk is every copy a backend can read: the ``Authorization`` and API key
        headers (``Authorization`` whatever its scheme, when it holds the key), the query
        parameter in ``QUERY_STRING`` and in the raw request URI the server provides
        (``RAW_URI``, ``REQUEST_URI``: backends and frameworks log them),
        and a ``Referer`` that repeats it (a browser sends the page's own URL, key and
        all, with the next request). A ``Referer`` that still holds the secret once the
        parameter is gone (in its path, say) is dropped whole.
        """
        if credential.where in ("bearer", "basic"):
            environ.pop("HTTP_AUTHORIZATION", None)
        elif credential.value in environ.get("HTTP_AUTHORIZATION", ""):
            # the key also sent under a scheme that is not read (``Token sk_…``, a client
            # sending ``Authorization`` as well as the key header): still the credential
            environ.pop("HTTP_AUTHORIZATION")
        environ.pop(self.header_key, None)
        if self.query_param:
            query = environ.get("QUERY_STRING", "")
            if self.query_param in unquote_plus(query):
                environ["QUERY_STRING"] = self._without_param(query)
            for key in ("RAW_URI", "REQUEST_URI"):
                raw = environ.get(key)
                if raw and "?" in raw:
                    path, _, raw_query = raw.partition("?")
                    if self.query_param in unquote_plus(raw_query):
                        kept = self._without_param(raw_query)
                        environ[key] = f"{path}?{kept}" if kept else path
        referer = environ.get("HTTP_REFERER")
        if referer:
            if self.query_param and "?" in referer:
                head, _, rest = referer.partition("?")
                query, hash_, fragment = rest.partition("#")
                kept = self._without_param(query)
                referer = head + (f"?{kept}" if kept else "") + hash_ + fragment
            if credential.value in referer or credential.value in unquote_plus(referer):
                environ.pop("HTTP_REFERER")
            else:
                environ["HTTP_REFERER"] = referer

    def _without_param(self, query: str) -> str:
        """``query`` without the credential's own segments: the rest stays byte for byte."""
        return "&".join(part for part in query.split("&")
                        if unquote_plus(part.partition("=")[0]) != self.query_param)


def _basic_user(value: str) -> str:
    try:
        decoded = b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Problem("invalid_key", "the Basic credentials are not valid base64") from None
    user = decoded.partition(":")[0]
    if not user:
        raise Problem("missing_credentials", "put the API key in the Basic user name "
                      "(curl -u sk_test_…:)")
    return user
