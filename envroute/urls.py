"""Validation of the URLs configuration names: backends (configured or stored) and stores.

One place, used by the configuration (``[backends.NAME] url``, ``[store] url``) and by
anything that stores a backend, so a stored backend is "validated exactly as
``[backends.NAME] url`` is" (§13) and ``manage.py check`` catches what the proxy would
refuse at start-up. Each function raises ``ValueError`` with a one-line reason; the
caller names the key.

Relative ``sqlite:///`` paths are resolved here against the directory of the TOML file
that names them (§9), so ``--config /etc/envroute.toml`` run from anywhere opens the same
store; a directory that does not exist is one clear line naming it, not SQLite's "unable
to open database file".
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import urlsplit

#: Store schemes built into the core, with the module each needs (None: the stdlib).
_STORE_EXTRAS = {"sqlite": None, "postgresql": ("psycopg", "postgres"),
                 "postgres": ("psycopg", "postgres")}
SQLITE_PREFIX = "sqlite:///"


def check_backend_url(url: str) -> None:
    """An ``http(s)://host[:port][/path]`` URL with no credentials, query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in a backend URL are not supported")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("a backend URL takes no query string or fragment")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"{url!r} holds spaces or control characters")


def resolve_store_url(url: str, base: str | os.PathLike[str] | None = None) -> str:
    """``url`` with a relative ``sqlite:///`` path made absolute against ``base``.

    ``base`` is the directory of the TOML file (``None``: the current directory, for a dict
    or ``--store``). Other URLs are returned unchanged. ``ValueError`` when the SQLite
    file's directory does not exist.
    """
    if not url.startswith(SQLITE_PREFIX):
        return url
    path = url[len(SQLITE_PREFIX):]
    if not path or path == ":memory:":
        raise ValueError(f"{url!r}: expected sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db")
    resolved = Path(path) if Path(path).is_absolute() else Path(base or Path.cwd()) / path
    resolved = Path(resolved.absolute())
    if not resolved.parent.is_dir():
        raise ValueError(f"the directory {resolved.parent} does not exist "
                         f"(create it, or point the store elsewhere)")
    return SQLITE_PREFIX + str(resolved)


def check_store_url(url: str, known_schemes: frozenset[str]) -> None:
    """A URL whose scheme some store handles, with that store's client library present."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError("expected a URL such as sqlite:///envroute.db or "
                         "postgresql://host/db")
    if scheme not in known_schemes:
        known = ", ".join(sorted(f"{s}://" for s in known_schemes))
        raise ValueError(f"unknown store scheme {scheme!r} (known: {known})")
    extra = _STORE_EXTRAS.get(scheme)
    if extra is not None and importlib.util.find_spec(extra[0]) is None:
        raise ValueError(f"the {scheme}:// store needs an extra: "
                         f"pip install 'envroute[{extra[1]}]'")
    if scheme.startswith("postgres"):
        try:
            urlsplit(url).port  # noqa: B018
        except ValueError:
            raise ValueError("the store URL has an invalid port") from None


def redact_url(url: str, *, drop_query: bool = False) -> str:
    """``url`` as it may be printed or logged: ``postgresql://u:secret@h/db`` ->
    ``postgresql://u:***@h/db``, and a ``password=`` query parameter (libpq and redis-py
    both read one) masked the same way. ``drop_query`` also drops the query string and the
    fragment, for URLs where any parameter may be a token (a JWKS URL's ``access_token``).
    Only what is masked changes (``sqlite:////abs.db`` keeps its four slashes).
    """
    base, mark, query = url.partition("?")
    if drop_query:
        mark = query = ""
    base = base.partition("#")[0] if drop_query else base
    netloc = urlsplit(base).netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            masked = f"{userinfo.partition(':')[0]}:***@{host}"
            base = base.replace(f"//{netloc}", f"//{masked}", 1)
    if query:
        query = "&".join(f"{item.partition('=')[0]}=***"
                         if item.partition("=")[0].lower() == "password" else item
                         for item in query.split("&"))
    return base + mark + query
