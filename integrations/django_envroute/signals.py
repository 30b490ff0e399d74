"""``envroute_event``: a Django signal sent after every change to a key, a customer or a
stored backend made in this process (the admin, ``manage.py envroute_*``, ``router.keys``).

Receivers get ``event=`` an :class:`envroute.Event` (``event.action``, ``event.target``,
``event.actor``, ``event.changes``, ``event.customer_id``, ``event.as_dict()``), the same
object ``[events] hooks`` receive::

    from django.dispatch import receiver
    from django_envroute.signals import envroute_event

    @receiver(envroute_event)
    def on_envroute_event(sender, event, **kwargs):
        if event.action == "key.revoked":
            notify_security_team(event.as_dict())

It is sent after the change is stored and recorded; a receiver that raises is logged on
``envroute.events`` and never undoes the change (the risk: a failing receiver must not
leave an admin believing a revocation did not happen).
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from envroute import Event

#: Sent with ``event=`` after each stored change; the sender is :class:`envroute.Event`.
envroute_event = Signal()


def send_event(event: Event) -> None:
    """The listener :mod:`envroute.audit` calls; registered in ``EnvrouteConfig.ready``."""
    for receiver, result in envroute_event.send_robust(sender=Event, event=event):
        if isinstance(result, Exception):
            _log(receiver, event, result)


def _log(receiver: Any, event: Event, error: Exception) -> None:
    import logging

    logging.getLogger("envroute.events").warning(
        "envroute_event receiver %s failed on %s %s (the change is stored): %s",
        getattr(receiver, "__qualname__", receiver), event.action, event.target, error,
        exc_info=error)
