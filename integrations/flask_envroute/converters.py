"""The ``envroute_id`` URL converter and the §18 refusals, for Flask.

``@app.get("/v1/charges/<envroute_id:charge_id>")`` matches ids made by
:func:`envroute.ids.new_id`. When the id belongs to another environment than the
caller's (``ch_live_…`` with a test key), the request is answered ``404
resource_missing`` (``application/problem+json``) and the view never runs: werkzeug
matches the URL before Flask dispatches, and the converter raises
:class:`ResourceMissing` there. :class:`~envroute.errors.EnvironmentMismatch` raised by a
view (``flask_envroute.db`` refusing another environment's database) is answered
``403 environment_mismatch`` the same way, instead of Flask's 500 page. Both are noted
on the request's exchange (:func:`envroute.handler.refusal`), so the access line and the
metrics' ``code`` label name the problem, as for the gateway's own refusals.

:func:`init_app` is called by :meth:`flask_envroute.EnvRoute.init_app`. Werkzeug looks
converters up when a rule is added, so call ``EnvRoute(app)`` / ``init_app`` before
registering blueprints or routes that use ``envroute_id``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, has_app_context, has_request_context, request
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter

from envroute import ids
from envroute.errors import EnvironmentMismatch
from envroute.handler import refusal
from envroute.names import REQUEST_ID_KEY
from envroute.problems import PROBLEM_CONTENT_TYPE, Problem
from envroute.settings import Settings

from .identity import get_identity

NAME = "envroute_id"
#: Where ``flask_envroute.db`` keeps a request's session (in the request's environ, never
#: in ``g``, which one app context may share between requests), closed when it ends.
SESSION_KEY = "flask_envroute.db.session"


class ResourceMissing(NotFound):
    """An ``envroute_id`` URL parameter that belongs to another environment."""


class EnvrouteIdConverter(BaseConverter):
    """Matches ``prefix_tag_random`` ids (and any other word); refuses foreign ones."""

    regex = r"[A-Za-z0-9_]+"

    def to_python(self, value: str) -> Any:
        identity = get_identity()
        if identity is not None:
            owner = ids.environment_of(value)
            if owner is not None and owner != identity.environment:
                raise ResourceMissing(f"No such object: '{value}'")
        return value

    def to_url(self, value: Any) -> str:
        return str(value)


def problem_response(problem: Problem) -> Response:
    """The contract's refusal as a Flask response, with the request's id."""
    request_id = request.environ.get(REQUEST_ID_KEY, "-")
    body = problem.body(request_id)
    response = Response(b"" if request.method == "HEAD" else body, status=problem.status,
                        content_type=PROBLEM_CONTENT_TYPE)
    for name, value in problem.response_headers(request_id, body):
        if name != "Content-Length":
            response.headers[name] = value
    return response


def _resource_missing(exc: ResourceMissing) -> Response:
    return problem_response(refusal(request.environ,
                                    Problem("resource_missing", str(exc.description))))


def _environment_mismatch(exc: EnvironmentMismatch) -> Response:
    return problem_response(refusal(request.environ, exc))  # logs it as the core does


def _close_session(exc: BaseException | None = None) -> None:
    session = request.environ.pop(SESSION_KEY, None) if has_request_context() else None
    if session is not None:
        session.close()  # what was not committed is rolled back


def _settings() -> Settings | None:
    if not has_app_context():
        return None
    state = current_app.extensions.get("envroute")
    return getattr(state, "settings", None)


def init_app(app: Flask) -> None:
    """Register the converter, the problem answers and the session teardown on ``app``."""
    app.url_map.converters[NAME] = EnvrouteIdConverter
    app.register_error_handler(ResourceMissing, _resource_missing)
    app.register_error_handler(EnvironmentMismatch, _environment_mismatch)
    app.teardown_request(_close_session)
    ids.add_settings_source(_settings)
