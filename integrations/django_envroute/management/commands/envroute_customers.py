"""``manage.py envroute_customers``: ``envroute customers`` for Django (see :mod:`._envroute`)."""

from __future__ import annotations

from ._envroute import GroupCommand


class Command(GroupCommand):
    group = "customers"
