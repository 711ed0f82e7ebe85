# The target lease speaks the claims vocabulary (shared.claims): claimed_by / claimed_until.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("cleanup", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(model_name="targetlease", old_name="holder", new_name="claimed_by"),
        migrations.RenameField(model_name="targetlease", old_name="expires_at", new_name="claimed_until"),
    ]
