from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Entry",
            fields=[
                ("id", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("amount", models.IntegerField()),
                ("note", models.CharField(blank=True, default="", max_length=100)),
            ],
            options={"ordering": ("amount",)},
        ),
    ]
