from datetime import datetime

from django.db.models import Count

from scraping.models import Change, FetchRecord


def scraping_totals(*, start: datetime, end: datetime) -> list[dict]:
    """Per source, of the fetches in [start, end): fetches by outcome, changes raised, and how many
    of its changes wait for review now (whenever raised); sources with none of these left out."""
    totals: dict[str, dict] = {}

    def row(name: str) -> dict:
        return totals.setdefault(name, {"source": name, "fetches": 0, "outcomes": {}, "raised": 0, "pending": 0})

    fetches = (FetchRecord.objects.filter(fetched_at__gte=start, fetched_at__lt=end)
               .values("source__name", "outcome").annotate(count=Count("id")))
    for fetched in fetches:
        total = row(fetched["source__name"])
        total["fetches"] += fetched["count"]
        total["outcomes"][fetched["outcome"]] = fetched["count"]
    raised = (Change.objects.filter(raised_at__gte=start, raised_at__lt=end)
              .values("source__name").annotate(count=Count("id")))
    for change in raised:
        row(change["source__name"])["raised"] = change["count"]
    pending = Change.objects.filter(status=Change.Status.PENDING).values("source__name").annotate(count=Count("id"))
    for change in pending:
        row(change["source__name"])["pending"] = change["count"]
    return sorted(totals.values(), key=lambda total: total["source"])
