"""`python manage.py cleanup [TARGET ...] [--dry-run]`: outside checks call this; keep it stable."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from cleanup.models import CleanupRun
from cleanup.services import removable_rows, retention_sweep
from cleanup.targets import retention_targets, unknown_targets


class Command(BaseCommand):
    help = "Run retention cleanup now, in the foreground, for the named targets (all when none is named)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "targets", nargs="*", metavar="TARGET",
            help=f"Targets to clean: {', '.join(retention_targets())}. Default: every enabled target.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")

    def handle(self, *args, targets: list[str], dry_run: bool, **options) -> None:
        unknown = unknown_targets(targets)
        if unknown:
            raise CommandError(
                f"Unknown target {', '.join(map(repr, unknown))}; known targets: {', '.join(retention_targets())}"
            )
        bars: list[tqdm] = []

        def watch_target(target, policy):
            # Targets run one after the other: the previous one's bar is complete.
            for finished in bars:
                finished.close()
            # Only on a terminal: in a log or a job's captured output, a bar is a line of
            # carriage returns per batch, before the summary anyone reads. Nor is its total
            # counted there: a COUNT over a million expired sessions took 0.1-0.4 s.
            on_terminal = self.stderr.isatty()
            bar = tqdm(
                total=self.count_or_none(target, policy) if on_terminal else None, desc=target.key,
                unit=" rows", file=self.stderr._out, dynamic_ncols=True, disable=not on_terminal,
            )
            bars.append(bar)
            return lambda progress: bar.update(progress.matched - bar.n)

        runs = retention_sweep(
            keys=targets or None, include_disabled=bool(targets), dry_run=dry_run,
            trigger=CleanupRun.Trigger.COMMAND, watch_target=watch_target,
        )
        for bar in bars:
            bar.close()
        self.print_summary(runs, dry_run)
        failed = [run.target for run in runs if run.status == CleanupRun.Status.FAILED]
        if failed:
            raise CommandError(f"cleanup failed for: {', '.join(failed)}")

    def count_or_none(self, target, policy) -> int | None:
        """The bar's total. Without one the bar still counts; the run records any real error."""
        try:
            removable = removable_rows(target=target, policy=policy)
            return removable.count() if removable is not None else 0
        except DatabaseError:
            return None

    def print_summary(self, runs: list[CleanupRun], dry_run: bool) -> None:
        deleted = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{'target':<20} {'status':<18} {'matched':>10} {deleted:>12} {'batches':>8} {'seconds':>8}  note"
        )
        for run in runs:
            self.stdout.write(
                f"{run.target:<20} {run.get_status_display():<18} {run.rows_matched:>10} "
                f"{(run.rows_matched if dry_run else run.rows_deleted):>12} {run.batches:>8} "
                f"{run.duration_seconds or 0:>8.1f}  {run.error}"
            )
