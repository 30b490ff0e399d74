"""API keys in the project's database: the record and the keyed hashes of its secrets.

Like djangorestframework-api-key, there is an abstract model (subclass it to add your own
columns) and a concrete one, :class:`APIKey`, which the ``django://`` store uses. No
secret is ever stored: :class:`KeySecret` keeps ``HMAC-SHA256(ENVROUTE["secret"], key)``
as hex, one row per secret, so a roll can keep the previous secret working for a while.

Revocation is permanent: :meth:`AbstractAPIKey.clean` and :meth:`AbstractAPIKey.save`
refuse to clear ``revoked_at`` once it has been saved.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from envroute import KeyRecord

UNREVOKE_MESSAGE = "A revoked key cannot be un-revoked; create a new key instead."


class AbstractAPIKey(models.Model):
    id = models.CharField(max_length=40, primary_key=True, editable=False,
                          help_text="Public and safe to log: key_…")
    environment = models.CharField(max_length=64, db_index=True)
    prefix = models.CharField(max_length=32, help_text="Such as sk_test_ or sk_live_.")
    last4 = models.CharField(max_length=4, help_text="The last four characters of the "
                             "current secret, to recognise it.")
    name = models.CharField(max_length=200, blank=True, default="",
                            help_text="A label for people.")
    metadata = models.JSONField(default=dict, blank=True,
                                help_text="Routed on: customer, tier, region, …")
    scopes = models.JSONField(default=list, blank=True,
                              help_text="Empty: unrestricted. Otherwise a restricted key.")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ("created_at", "id")
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved_revoked_at = self.revoked_at

    def __str__(self) -> str:
        return f"{self.name or self.id} ({self.display})"

    @property
    def display(self) -> str:
        """How the key is shown anywhere after its creation: prefix and last four."""
        return f"{self.prefix}…{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def to_record(self) -> KeyRecord:
        return KeyRecord(
            id=self.id, environment=self.environment, prefix=self.prefix, last4=self.last4,
            created_at=self.created_at, metadata=dict(self.metadata or {}), name=self.name,
            scopes=tuple(self.scopes or ()), expires_at=self.expires_at,
            revoked_at=self.revoked_at, last_used_at=self.last_used_at,
        )

    def status(self) -> str:
        return self.to_record().status()

    def _unrevoking(self) -> bool:
        return self._saved_revoked_at is not None and self.revoked_at is None

    def clean(self) -> None:
        super().clean()
        if self._unrevoking():
            raise ValidationError({"revoked_at": UNREVOKE_MESSAGE})

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._unrevoking():
            raise ValidationError(UNREVOKE_MESSAGE)
        super().save(*args, **kwargs)
        self._saved_revoked_at = self.revoked_at

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._saved_revoked_at = self.revoked_at


class APIKey(AbstractAPIKey):
    class Meta(AbstractAPIKey.Meta):
        abstract = False


class KeySecret(models.Model):
    """One secret of a key, as its keyed hash. A roll adds a row and retires the others."""

    key = models.ForeignKey(APIKey, on_delete=models.CASCADE, related_name="secrets")
    hash = models.CharField(max_length=64, unique=True,
                            help_text="HMAC-SHA256 of the secret under ENVROUTE['secret'].")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Set when a roll retires this secret.")

    class Meta:
        verbose_name = "key secret"

    def __str__(self) -> str:
        return f"secret of {self.key_id}"
