from django.core.management.base import BaseCommand, CommandError

from scraping.extract import ExtractError, Extractor, Kind
from scraping.services import url_try


class Command(BaseCommand):
    help = ("Fetch URL once through the product's fetcher (the gate, robots.txt, its limits), print the "
            "outcome and what is extracted, and store nothing. Exits non-zero when it got no content.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("url")
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--css", metavar="SELECTOR", help="extract what this CSS selector picks")
        how.add_argument("--xpath", metavar="EXPR", help="extract what this XPath 1.0 expression picks")
        how.add_argument("--jsonpath", metavar="EXPR", help="extract what this JSONPath picks from a JSON response")
        parser.add_argument("--allow-port", type=int, action="append", default=[], metavar="PORT",
                            help="a port besides 80 and 443 that this fetch may use")

    def handle(self, *args, url: str, css: str | None, xpath: str | None, jsonpath: str | None,
               allow_port: list[int], **options) -> None:
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
