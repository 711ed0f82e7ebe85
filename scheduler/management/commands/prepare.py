from django.core.management import call_command
from django.core.management.base import BaseCommand

from cleanup.services import retention_policies_seed
from reports.services import reports_seed
from scheduler.services import schedules_seed


class Command(BaseCommand):
    help = "Migrate, collect static files, seed default schedules, retention policies and reports. Safe to repeat."

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database is up to date.")
        call_command("collectstatic", interactive=False, verbosity=0)
        for name, created in schedules_seed():
            self.stdout.write(f"Schedule {name!r}: {'created' if created else 'kept as it is'}")
        for target, created in retention_policies_seed():
            self.stdout.write(f"Retention policy {target!r}: {'created' if created else 'kept as it is'}")
        for name, created in reports_seed():
            self.stdout.write(f"Report {name!r}: {'created' if created else 'kept as it is'}")
