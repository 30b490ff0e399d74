"""Seed data: real charges in the production database, mock ones in the sandbox's.

``migrate`` and ``migrate --database sandbox`` run this once per database; the alias
being migrated decides which rows it gets.
"""

from django.db import migrations

SEED = {
    "default": [("ch_live_000000000000000000000001", 129900, "usd", "Annual plan, ACME Corp"),
                ("ch_live_000000000000000000000002", 4900, "eur", "Monthly plan, Globex")],
    "sandbox": [("ch_test_000000000000000000000001", 1000, "usd", "Mock charge (sandbox data)"),
                ("ch_test_000000000000000000000002", 2500, "eur", "Mock charge (sandbox data)")],
}


def seed(apps, schema_editor):
    alias = schema_editor.connection.alias
    Charge = apps.get_model("charges", "Charge")
    for charge_id, amount, currency, description in SEED.get(alias, []):
        Charge.objects.using(alias).create(id=charge_id, amount=amount, currency=currency,
                                           description=description)


class Migration(migrations.Migration):
    dependencies = [("charges", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
