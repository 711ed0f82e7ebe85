from django.core.management import call_command
from django.core.management.base import BaseCommand

from scheduler.services import schedules_seed


class Command(BaseCommand):
    help = "Migrate the database, collect static files and seed the default schedules. Safe to repeat."

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database is up to date.")
        call_command("collectstatic", interactive=False, verbosity=0)
        for name, created in schedules_seed():
            self.stdout.write(f"Schedule {name!r}: {'created' if created else 'kept as it is'}")
