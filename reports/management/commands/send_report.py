"""`python manage.py send_report NAME [--date YYYY-MM-DD]`: outside checks call this; keep it stable."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from reports.models import Report, ReportDelivery, ReportRun, period_text
from reports.services import ReportNotBuilt, report_deliver


class Command(BaseCommand):
    help = ("Build a report due on a day and send it now, in the foreground. Each recipient gets it once per "
            "day: recipients who already have that day's report are not sent it again.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="The report's name, as in the admin.")
        parser.add_argument("--date", help="The day the report is due, YYYY-MM-DD; it covers the period counted back "
                                           "from its time that day (a previous-day report: the day before). "
                                           "Default: today in its timezone.")

    def handle(self, *args, name: str, date: str | None, **options) -> None:
        report = Report.objects.filter(name=name).first()
        if report is None:
            known = ", ".join(repr(known) for known in Report.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No report named {name!r}; reports: {known}.")
        day = self.day(date, report)
        if not report.recipient_list():
            raise CommandError(f"Report {name!r} has no recipients; add some on its admin page.")
        already = set(ReportDelivery.objects.filter(
            run__report=report, run__covered_day=day, status=ReportDelivery.Status.SENT,
        ).values_list("recipient", flat=True))
        slot = report.slot_on(day)
        start, end = report.period_for(slot)
        self.stderr.write(f"Building {name!r} for {day:%Y-%m-%d}, covering {period_text(start, end, report.zone)}...")
        try:
            run = report_deliver(report=report, slot=slot)
        except ReportNotBuilt as error:
            raise CommandError(str(error)) from None
        self.print_summary(run, already)

    def day(self, text: str | None, report: Report) -> date:
        if text is None:
            return timezone.now().astimezone(report.zone).date()
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise CommandError(f"--date: {text!r} is not a date in the form YYYY-MM-DD.") from None

    def print_summary(self, run: ReportRun, already: set[str]) -> None:
        self.stdout.write(f"Report {run.report.name!r} for {run.covered_day:%Y-%m-%d}: {run.get_status_display()}")
        if run.error:
            self.stdout.write(run.error)
        deliveries = list(run.deliveries.filter(recipient__in=run.report.recipient_list()))
        for delivery in deliveries:
            outcome = "already sent before" if delivery.recipient in already else delivery.get_status_display().lower()
            detail = f" ({delivery.last_error})" if delivery.status == ReportDelivery.Status.FAILED else ""
            self.stdout.write(f"  {delivery.recipient:<40} {outcome}{detail}")
        failed = [delivery.recipient for delivery in deliveries if delivery.status == ReportDelivery.Status.FAILED]
        if failed:
            # One try each: a server that refused for now (4xx, greylisting) may take it later, and
            # running the command again sends only to those not reached.
            raise CommandError(f"not delivered to: {', '.join(failed)}; run the command again to retry them")
