"""``manage.py envroute_audit``: ``envroute audit`` for Django (see :mod:`._envroute`)."""

from __future__ import annotations

from ._envroute import GroupCommand


class Command(GroupCommand):
    group = "audit"
