"""The ``envroute_id`` path converter: another environment's id is a 404 (§18).

``path("charges/<envroute_id:charge_id>", views.charge)`` matches ids made by
:func:`envroute.ids.new_id`. When the id belongs to another environment than the
request's caller (``ch_live_…`` with a test key), the request is answered
``404 resource_missing`` as ``application/problem+json`` and the view never runs, as
Stripe answers "No such charge". An id of the caller's own environment, or one that
carries no environment (``ch_42``), reaches the view unchanged.

How: Django resolves URLs inside the middleware chain and turns a converter's exception
into its own 404 page before ``EnvRouteMiddleware`` could see it, so the converter records
the problem on the request's environ and raises :class:`ResourceMissing` (an ``Http404``):
no view runs, and the middleware answers the recorded problem instead of Django's page.
Registered by ``django_envroute``'s ``AppConfig.ready()``.
"""

from __future__ import annotations

from django.http import Http404
from django.urls import register_converter
from django.urls.converters import get_converters

from envroute import fence
from envroute.ids import environment_of
from envroute.problems import Problem

from .db import PROBLEM_KEY

NAME = "envroute_id"


class ResourceMissing(Http404):
    """An ``envroute_id`` path parameter of another environment."""


class EnvrouteIdConverter:
    """Matches ``prefix_tag_random`` ids (and any other word); refuses foreign ones."""

    regex = r"[A-Za-z0-9_]+"

    def to_python(self, value: str) -> str:
        caller = fence.request_environment()
        owner = environment_of(value)
        if caller is not None and owner is not None and owner != caller:
            problem = Problem("resource_missing", f"No such object: '{value}'")
            environ = fence.request_environ()
            if environ is not None:
                environ[PROBLEM_KEY] = problem
            raise ResourceMissing(problem.detail)
        return value

    def to_url(self, value: str) -> str:
        return str(value)


def register() -> None:
    """Register the converter once (Django warns when a name is registered twice)."""
    if NAME not in get_converters():
        register_converter(EnvrouteIdConverter, NAME)
