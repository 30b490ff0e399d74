from django.apps import AppConfig


class LedgerConfig(AppConfig):
    """A model for the §18 tests: one table, in each environment's database."""

    name = "tests.integrations.djangoapp.ledger"
    label = "ledger"
    default_auto_field = "django.db.models.BigAutoField"
