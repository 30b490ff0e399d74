from __future__ import annotations

from django.db import models


class Entry(models.Model):
    """One row per write; ``id`` is an ``envroute.ids`` id of the writer's environment."""

    id = models.CharField(primary_key=True, max_length=64)
    amount = models.IntegerField()
    note = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        app_label = "ledger"
        ordering = ("amount",)
