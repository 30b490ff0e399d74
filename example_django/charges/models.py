from django.db import models


class Charge(models.Model):
    """A real (production) charge. Sandbox keys never reach this table."""

    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    description = models.CharField(max_length=200, blank=True, default="")
    created_by = models.CharField(max_length=40, blank=True, default="",
                                  help_text="The envroute key id that created it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"ch_{self.pk}: {self.amount} {self.currency}"

    def to_dict(self) -> dict[str, object]:
        return {"id": f"ch_{self.pk}", "object": "charge", "amount": self.amount,
                "currency": self.currency, "description": self.description, "livemode": True}
