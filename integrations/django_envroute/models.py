"""API keys in the project's database: the records and the keyed hashes of their secrets.

Like djangorestframework-api-key, there is an abstract model (subclass it to add your own
columns) and a concrete one, :class:`APIKey`, which the ``django://`` store uses. No
secret is ever stored: :class:`KeySecret` keeps ``HMAC-SHA256(ENVROUTE["secret"], key)``
as hex, one row per secret, so a roll can keep the previous secret working for a while.

Revocation is permanent: :meth:`AbstractAPIKey.clean` and :meth:`AbstractAPIKey.save`
refuse to clear ``revoked_at`` once it has been saved.

0.2 adds :class:`Customer` (who keys belong to), :class:`StoredBackend`, :class:`KeyUsage`
(requests and errors per key per UTC day) and :class:`AuditEntry` (every change, never a
secret), the same columns as the SQL stores' schema (:mod:`envroute.stores.schema`), with
migration ``0002``. Records are made by the one row mapper (:mod:`envroute.stores.rows`),
so naive datetimes (``USE_TZ = False``) come back aware, in UTC, as from every store.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from envroute import KeyRecord
from envroute.stores import rows
from envroute.stores.base import BackendRecord, CustomerRecord

UNREVOKE_MESSAGE = "A revoked key cannot be un-revoked; create a new key instead."


def fields_of(instance: models.Model, names: tuple[str, ...]) -> dict[str, Any]:
    """A model's values as the row mapper reads them (``customer_id`` is the FK's column)."""
    return {name: getattr(instance, name) for name in names}


class Customer(models.Model):
    """Who a set of keys belongs to (contract §12); ``id`` is the operator's own."""

    id = models.CharField(max_length=64, primary_key=True,
                          help_text="Your own account id: 1-64 of A-Za-z0-9_.:-")
    name = models.CharField(max_length=200, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True,
                                help_text="Shared by every key of the customer; a key's "
                                          "own metadata wins on a name both have.")
    created_at = models.DateTimeField()
    disabled_at = models.DateTimeField(null=True, blank=True,
                                       help_text="Set while every key of it is refused.")

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id

    @property
    def status(self) -> str:
        return "disabled" if self.disabled_at is not None else "active"

    def to_record(self) -> CustomerRecord:
        record = rows.customer_record(fields_of(self, rows.CUSTOMER_COLUMNS))
        assert record is not None
        return record


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
    #: 0.2: the customer the key belongs to; it never changes
    customer = models.ForeignKey(Customer, null=True, blank=True, editable=False,
                                 on_delete=models.PROTECT, related_name="%(class)ss")
    #: 0.2: set while the key is disabled (reversible, unlike revocation)
    disabled_at = models.DateTimeField(null=True, blank=True)

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
        return rows.key_record(fields_of(self, rows.KEY_COLUMNS))

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
    fingerprint = models.CharField(max_length=32, blank=True, default="",
                                   help_text="Which ENVROUTE['secret'] the hash was made "
                                             "under (a public fingerprint; '' before 0.2).")

    class Meta:
        verbose_name = "key secret"

    def __str__(self) -> str:
        return f"secret of {self.key_id}"


class StoredBackend(models.Model):
    """A URL backend kept in the database (contract §13), served beside the configured ones.
    Validated exactly as ``[backends.NAME] url`` is, by whoever stores it."""

    name = models.CharField(max_length=64, primary_key=True)
    url = models.CharField(max_length=2048)
    timeout = models.FloatField(default=30.0)
    connect_timeout = models.FloatField(default=5.0)
    strip_prefix = models.CharField(max_length=200, blank=True, default="")
    pool_size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ("name",)
        verbose_name = "stored backend"

    def __str__(self) -> str:
        return self.name

    def to_record(self) -> BackendRecord:
        return rows.backend_record(fields_of(self, rows.BACKEND_COLUMNS))


class KeyUsage(models.Model):
    """One key's requests and errors on one UTC day, added to by every worker's batches."""

    key = models.ForeignKey(APIKey, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["key", "day"],
                                               name="django_envroute_usage_key_day"),)
        verbose_name = "key usage"
        verbose_name_plural = "key usage"

    def __str__(self) -> str:
        return f"{self.key_id} {self.day}"


class AuditEntry(models.Model):
    """One change to a key, a customer or a stored backend (contract §16). Never a secret.

    ``kind`` is the action's first word (``key``, ``customer``, ``backend``), so the
    filters need no pattern match; ``customer_id`` is the target's customer.
    """

    seq = models.BigAutoField(primary_key=True)
    at = models.DateTimeField()
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    target = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True)
    customer_id = models.CharField(max_length=64, null=True, blank=True, db_index=True)

    class Meta:
        ordering = ("-seq",)
        indexes = (models.Index(fields=["kind", "target"],
                                name="django_envroute_audit_target"),)
        verbose_name = "audit record"

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
