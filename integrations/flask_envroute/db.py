"""Sandbox data in the same Flask app: a SQLAlchemy session per environment (§18).

Extra ``sqlalchemy``. ::

    app.config["ENVROUTE_DATABASES"] = {
        "sandbox": "postgresql+psycopg://127.0.0.1/shop_sandbox",
        "production": "postgresql+psycopg://127.0.0.1/shop",
    }

    from flask_envroute.db import session

    @app.get("/v1/charges")
    def charges():
        return {"data": [c.to_dict() for c in session.scalars(select(Charge))]}

:data:`session` is a SQLAlchemy :class:`~sqlalchemy.orm.Session` bound, for each request,
to the engine of the caller's environment; one engine per URL per process, pooled, so a
sandbox request can only ever reach the sandbox database through it. It is closed when
the request ends (what was not committed is rolled back). Outside a request it raises,
unless :func:`using_environment` chose an environment for the block::

    with app.app_context(), using_environment("sandbox"):
        session.add(Charge(amount=100)); session.commit()

:func:`get_engine` gives the engine (for ``metadata.create_all``, migrations, raw SQL);
during a request it refuses any environment but the caller's with
:class:`CrossEnvironmentAccess`, which the extension answers ``403 environment_mismatch``.

Risk: only what goes through this module is fenced. An engine or connection the app
creates itself, caches keyed without the environment, files and queues are not; see
docs/sandbox-data.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import cast

from flask import current_app, has_app_context, has_request_context, request
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session
from werkzeug.local import LocalProxy

from envroute import fence
from envroute.fence import CrossEnvironmentAccess

from .converters import SESSION_KEY
from .identity import get_identity

SETTING = "ENVROUTE_DATABASES"

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()
_block_session: ContextVar[Session | None] = ContextVar("envroute_block_session",
                                                        default=None)


def _request_environment() -> str | None:
    if not has_request_context():
        return None
    identity = get_identity()
    return identity.environment if identity is not None else None


def _databases() -> Mapping[str, str]:
    if not has_app_context():
        raise RuntimeError("flask_envroute.db needs an app context: use it in a request, "
                           "or inside `with app.app_context():`")
    value = current_app.config.get(SETTING)
    if not isinstance(value, Mapping):
        raise RuntimeError(f'set app.config["{SETTING}"] to {{environment: database URL}}')
    return value


def _engine_for(url: str) -> Engine:
    """One engine (and pool) per URL per process: a forked worker builds its own."""
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = create_engine(url, pool_pre_ping=True)
    return engine


def current_environment() -> str:
    """The environment the running code works for; RuntimeError when there is none."""
    environment = fence.current_environment() or _request_environment()
    if environment is None:
        raise RuntimeError("flask_envroute.db is used outside a request envroute admitted: "
                           "wrap the code in flask_envroute.db.using_environment(name)")
    return environment


def get_engine(environment: str | None = None) -> Engine:
    """The engine of ``environment`` (default: the running code's environment).

    During a request, or inside :func:`using_environment`, any other environment raises
    :class:`CrossEnvironmentAccess`.
    """
    held = fence.current_environment() or _request_environment()
    name = environment or current_environment()
    fence.check_switch(name, held)
    url = _databases().get(name)
    if url is None:
        raise CrossEnvironmentAccess(f"the environment {name!r} has no database in "
                                     f'app.config["{SETTING}"]')
    return _engine_for(str(url))


def get_session() -> Session:
    """The session of the running code: the request's, or the :func:`using_environment`
    block's. Created on first use."""
    block = _block_session.get()
    if block is not None:
        return block
    engine = get_engine()
    if not has_request_context():  # a block's session is made when the block starts
        raise RuntimeError("flask_envroute.db.session: no session outside a request")
    session: Session | None = request.environ.get(SESSION_KEY)
    if session is None:
        session = request.environ[SESSION_KEY] = Session(bind=engine)
    return session


@contextmanager
def using_environment(name: str) -> Iterator[Session]:
    """Choose ``name``'s database for a block (scripts, tasks, tests); yields its session.

    Inside a request only the caller's own environment may be chosen. The block's session
    is closed when the block ends: commit what should stay.
    """
    fence.check_switch(name, _request_environment())
    with fence.using_environment(name):
        if _request_environment() is not None:  # the request's own session serves
            yield get_session()
            return
        session = Session(bind=get_engine(name))
        token = _block_session.set(session)
        try:
            yield session
        finally:
            _block_session.reset(token)
            session.close()


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests, or before a fork)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


#: The running code's SQLAlchemy session (see the module's documentation).
session: Session = cast(Session, LocalProxy(get_session))

__all__ = ["CrossEnvironmentAccess", "current_environment", "dispose_engines", "get_engine",
           "get_session", "session", "using_environment"]
