from django.core.management import call_command
from django.core.management.base import BaseCommand

from shared.declarations import declared_seeds


class Command(BaseCommand):
    help = "Migrate, collect static files, seed what every app declares (schedules, policies, reports). Repeatable."

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database is up to date.")
        call_command("collectstatic", interactive=False, verbosity=0)
        for seed in declared_seeds():
            for name, created in seed.ensure():
                self.stdout.write(f"{seed.what} {name!r}: {'created' if created else 'kept as it is'}")
