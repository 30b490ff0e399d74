from django.db import models

from envroute.ids import environment_of


class Charge(models.Model):
    """A charge, in the database of the environment it belongs to.

    The same model, the same table, in two databases: ``default`` (production) and
    ``sandbox``. ``django_envroute.db.EnvironmentRouter`` picks the database from the
    caller's key, so no view ever names one.
    """

    id = models.CharField(primary_key=True, max_length=64,
                          help_text="ch_test_… or ch_live_…: envroute.ids.new_id")
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    description = models.CharField(max_length=200, blank=True, default="")
    created_by = models.CharField(max_length=40, blank=True, default="",
                                  help_text="The envroute key id that created it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"{self.id}: {self.amount} {self.currency}"

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "object": "charge", "amount": self.amount,
                "currency": self.currency, "description": self.description,
                "livemode": environment_of(self.id) == "production"}
