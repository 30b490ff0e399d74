from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='Charge',
            fields=[
                ('id', models.CharField(help_text='ch_test_… or ch_live_…: envroute.ids.new_id', max_length=64, primary_key=True, serialize=False)),
                ('amount', models.PositiveIntegerField()),
                ('currency', models.CharField(default='usd', max_length=3)),
                ('description', models.CharField(blank=True, default='', max_length=200)),
                ('created_by', models.CharField(blank=True, default='', help_text='The envroute key id that created it.', max_length=40)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ('created_at', 'id'),
            },
        ),
    ]
