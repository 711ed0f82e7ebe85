"""`python manage.py scrape URL [--css SEL | --xpath EXPR | --jsonpath EXPR]` and
`python manage.py scrape --source NAME`: outside checks call these; keep them stable."""

from django.core.management.base import BaseCommand, CommandError

from scheduler.models import ScheduleRun
from scheduler.services import run_here_now
from scraping.extract import ExtractError, Extractor, Kind
from scraping.models import Source
from scraping.services import url_try
from scraping.sources import source_schedule_sync
from scraping.tasks import scrape_source
from shared.claims import holder_name


class Command(BaseCommand):
    help = ("Fetch URL once through the product's fetcher (the gate, robots.txt, its limits), print the "
            "outcome and what is extracted, and store nothing; exits non-zero when it got no content. "
            "With --source NAME: fetch that source now, recorded in the run ledger like a scheduled run.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("url", nargs="?")
        parser.add_argument("--source", metavar="NAME", help="fetch this source (by its name in the admin) now")
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--css", metavar="SELECTOR", help="extract what this CSS selector picks")
        how.add_argument("--xpath", metavar="EXPR", help="extract what this XPath 1.0 expression picks")
        how.add_argument("--jsonpath", metavar="EXPR", help="extract what this JSONPath picks from a JSON response")
        parser.add_argument("--allow-port", type=int, action="append", default=[], metavar="PORT",
                            help="a port besides 80 and 443 that this fetch may use")

    def handle(self, *args, url: str | None, source: str | None, css: str | None, xpath: str | None,
               jsonpath: str | None, allow_port: list[int], **options) -> None:
        if (url is None) == (source is None):
            raise CommandError("give a URL or --source NAME (one of them)")
        if source is not None:
            if css or xpath or jsonpath or allow_port:
                raise CommandError("--source fetches as the source is configured; --css, --xpath, --jsonpath "
                                   "and --allow-port are for a URL")
            return self.run_source(source)
        extractor = self.extractor(css=css, xpath=xpath, jsonpath=jsonpath)
        tried = url_try(url=url, extractor=extractor, ports=tuple(allow_port))
        result = tried.fetch
        self.stdout.write(f"{url}: {result.outcome}{f' ({result.detail})' if result.detail else ''}")
        for hop in result.hops:
            self.stdout.write(f"  redirected to {hop}")
        if tried.robots:
            self.stdout.write(f"  robots.txt: {tried.robots}")
        if tried.extract_error:
            raise CommandError(f"extraction failed: {tried.extract_error}")
        if not tried.ok:
            raise CommandError(f"no content from {url}: {result.outcome}")
        self.stdout.write(f"  {len(result.body)} bytes; {extractor.kind} extract:")
        self.stdout.write(tried.extract)

    def run_source(self, name: str) -> None:
        source = Source.objects.filter(name=name).first()
        if source is None:
            known = ", ".join(repr(known) for known in Source.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No source named {name!r}; sources: {known}.")
        schedule = source.schedule or source_schedule_sync(source=source)
        self.stderr.write(f"Fetching {name!r} ({source.url}) now...")
        run = run_here_now(schedule=schedule, task=scrape_source, node=holder_name("scrape-command"),
                           foreground=True)
        output = run.output if isinstance(run.output, dict) else {}
        detail = f" ({output['detail']})" if output.get("detail") else ""
        self.stdout.write(f"{name}: {output.get('outcome', run.get_status_display().lower())}{detail}")
        if output.get("change"):
            self.stdout.write(f"  change {output['change']} raised: waiting for review under Scraping › Changes")
        elif output.get("snapshot"):
            self.stdout.write(f"  content {output['snapshot']}; no change to review")
        self.stdout.write(f"  recorded as run {run.pk} ({run.get_status_display().lower()}) in the run ledger")
        if run.status != ScheduleRun.Status.SUCCEEDED:
            raise CommandError(f"source {name!r} was not fetched: {run.error or run.reason or run.status}")

    @staticmethod
    def extractor(*, css: str | None, xpath: str | None, jsonpath: str | None) -> Extractor:
        kind, expression = next(((kind, expression) for kind, expression in
                                 ((Kind.CSS, css), (Kind.XPATH, xpath), (Kind.JSONPATH, jsonpath)) if expression),
                                (Kind.TEXT, ""))
        extractor = Extractor(kind, expression)
        try:
            extractor.check()
        except ExtractError as error:
            raise CommandError(f"--{kind}: {error}") from None
        return extractor
