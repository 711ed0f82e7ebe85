"""Staff-only actions of the scraping admin, each a POST (CSRF-protected by `admin_view`):

- the Test fetch of a source's form as it stands, which stores nothing;
- a reviewer's decision on a change.

A GET of either is refused: a link followed, prefetched or crawled must never send a request
to an outside site or decide a change.
"""

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.forms import modelform_factory
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from scraping.changes import NotPending, change_review
from scraping.fetcher import Outcome
from scraping.models import Change, Source
from scraping.services import url_try
from scraping.source_fetch import RATE_LIMITED
from shared.badges import badge

# A fetch's outcome by tone: a rate-limited fetch is tried again later; any other that got no
# content failed.
OUTCOME_TONES = {Outcome.FETCHED: "good", Outcome.NOT_MODIFIED: "good", RATE_LIMITED: "warning"}

# What each decision does, told to the reviewer who made it.
DECIDED = {
    Change.Status.APPROVED: "Approved: it is now the baseline of {source}; later fetches are compared with it.",
    Change.Status.REJECTED: "Rejected: the baseline of {source} stays, and this content is not raised again.",
    Change.Status.IGNORED: "Ignored: closed without a verdict; raised again if the page shows it again later.",
}

# Only what a fetch of the source uses: a Test fetch of a new source needs no name yet. The
# model's clean() checks these same fields (the URL through the gate, the expression).
TestFetchForm = modelform_factory(Source, fields=["url", "extract", "expression", "ignore", "allowed_port"])


def outcome_badge(outcome: str) -> str:
    return badge(outcome.replace("_", " "), OUTCOME_TONES.get(outcome, "bad"), status=f"fetch-{outcome}")


def may_review(user) -> bool:
    # Deciding moves a source's baseline: a change, not a review; view permission is not enough.
    return user.has_perm("scraping.change_change")


@require_POST
def source_test_fetch(request: HttpRequest, *, model_admin: ModelAdmin, source_id: int | None = None) -> HttpResponse:
    """Fetch the URL in the posted source form once, through the gate and robots.txt as every fetch
    goes (but without waiting for the host's turn), and show what came."""
    source = get_object_or_404(Source, pk=source_id) if source_id else Source()
    # Sending a request in the site's name is a change, not a review.
    if source.pk and not model_admin.has_change_permission(request, source):
        raise PermissionDenied
    if not source.pk and not model_admin.has_add_permission(request):
        raise PermissionDenied
    form = TestFetchForm(request.POST, instance=source)
    tried = url_try(url=source.url, extractor=source.extractor, ports=source.ports) if form.is_valid() else None
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Source._meta, "title": f"Test fetch of {request.POST.get('name') or source.url or 'a new source'}",
        "source": source, "form": form, "tried": tried,
        "outcome": outcome_badge(tried.fetch.outcome) if tried else "",
    }
    return TemplateResponse(request, "admin/scraping/source/test_fetch.html", context)


def change_decide(request: HttpRequest, change: Change, decision: str) -> None:
    """Record `decision` on `change` by the user of `request`, and tell them what it did."""
    try:
        change_review(change=change, decision=decision, reviewer=request.user.get_username(), now=timezone.now())
    except NotPending as already:
        messages.warning(request, f"Nothing was changed: {already}.")
        return
    messages.success(request, f"{change}: {DECIDED[decision].format(source=change.source)}")


@require_POST
def change_review_view(request: HttpRequest, *, change_id: int) -> HttpResponse:
    if not may_review(request.user):
        raise PermissionDenied
    change = get_object_or_404(Change.objects.select_related("source"), pk=change_id)
    decision = request.POST.get("decision", "")
    if decision not in DECIDED:
        return HttpResponseBadRequest(f"decision: one of {', '.join(DECIDED)}.", content_type="text/plain")
    change_decide(request, change, decision)
    return HttpResponseRedirect(reverse("admin:scraping_change_change", args=[change.pk]))
