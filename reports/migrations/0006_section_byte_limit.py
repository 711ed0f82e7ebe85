import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('reports', '0005_report_name_one_line'),
    ]

    operations = [
        migrations.AddField(
            model_name='reportsection',
            name='byte_limit',
            field=models.PositiveIntegerField(blank=True, help_text='Rows are read while their values fit in this many bytes, each value cut to REPORT_CELL_BYTES; blank: REPORT_SECTION_BYTES (2,000,000 unless set). The email says what was cut.', null=True, validators=[django.core.validators.MinValueValidator(10000), django.core.validators.MaxValueValidator(20000000)]),
        ),
    ]
