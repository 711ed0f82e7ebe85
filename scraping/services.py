"""Fetching a URL the way every part of the product does: the gate, robots.txt, the fetcher, then
the extraction. `url_try` stores nothing: the `scrape` command and the admin's Test fetch use it."""

from dataclasses import dataclass

from django.conf import settings

from scraping.extract import ExtractError, Extractor
from scraping.fetcher import Fetch, Outcome, refused_detail
from scraping.gate import Refused, url_target
from scraping.outbound import get, robots_verdict


@dataclass
class Tried:
    fetch: Fetch
    robots: str = ""  # what robots.txt said, when it was read
    extract: str = ""
    extract_error: str = ""

    @property
    def ok(self) -> bool:
        return self.fetch.outcome in (Outcome.FETCHED, Outcome.NOT_MODIFIED) and not self.extract_error


def url_try(*, url: str, extractor: Extractor, ports: tuple[int, ...] = ()) -> Tried:
    """Fetch `url` once through the gate, obeying its robots.txt, and extract what `extractor` watches."""
    allowed = settings.OUTBOUND_ALLOWED_NETWORKS
    try:
        url_target(url, ports=ports, allowed=allowed)
    except Refused as refused:
        return Tried(Fetch(url=url, outcome=Outcome.REFUSED, detail=refused_detail(url, refused)))
    verdict = robots_verdict(url, cache=None, ports=ports)
    if not verdict.allowed:
        return Tried(Fetch(url=url, outcome=Outcome.DISALLOWED, detail=verdict.detail), robots=verdict.detail)
    result = Tried(get(url, ports=ports), robots=verdict.detail)
    if result.fetch.outcome == Outcome.FETCHED:
        try:
            result.extract = extractor.extract(result.fetch.body)
        except ExtractError as error:
            result.extract_error = str(error)
    return result
