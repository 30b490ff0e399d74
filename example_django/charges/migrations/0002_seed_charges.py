"""A few real charges, so a production key sees data on the first try."""

from django.db import migrations

SEED = [(129900, "usd", "Annual plan, ACME Corp"), (4900, "eur", "Monthly plan, Globex")]


def seed(apps, schema_editor):
    Charge = apps.get_model("charges", "Charge")
    for amount, currency, description in SEED:
        Charge.objects.create(amount=amount, currency=currency, description=description)


class Migration(migrations.Migration):
    dependencies = [("charges", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
