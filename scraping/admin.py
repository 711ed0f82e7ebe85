"""The scraping admin: sources with their health and a Test fetch, changes waiting for a reviewer,
and the fetch history and snapshots behind them, for review.

Page text is untrusted: every extract, snapshot and diff is escaped (format_html), never marked
safe, so a page that says <script> shows it as text.
"""

from datetime import timedelta
from functools import partial
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, Q
from django.db.models.functions import Length
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from scheduler.admin_runs import run_status_badge, run_time
from scheduler.models import ScheduleRun
from scraping import admin_views
from scraping.admin_views import change_decide, may_review, outcome_badge
from scraping.fetcher import Outcome
from scraping.health import source_health
from scraping.models import Change, FetchRecord, Snapshot, Source
from scraping.source_fetch import EMPTY, EXTRACT_FAILED, RATE_LIMITED
from scraping.sources import source_delete, source_save
from shared.admin_owners import ScheduleOwnerAdmin
from shared.admin_pages import CappedCountPaginator, PageCompletingAdmin
from shared.admin_review import ReviewOnlyAdmin
from shared.badges import badge, tone_colour
from shared.display import duration_in_words, moment
from shared.links import linked

HEALTH_TONES = {Source.Health.OK: "good", Source.Health.NEW: "quiet", Source.Health.STALE: "warning",
                Source.Health.FAILING: "bad", Source.Health.BLOCKED: "bad"}
# Pending waits for a person, as a running run waits for its worker.
CHANGE_TONES = {Change.Status.PENDING: "busy", Change.Status.APPROVED: "good", Change.Status.REJECTED: "bad",
                Change.Status.IGNORED: "quiet"}
# A unified diff's lines by their first character; the two header lines are told apart by place,
# since an added line may itself start with "++".
DIFF_TONES = {"+": ("added", "good"), "-": ("removed", "bad"), "@": ("hunk", "busy")}
DIFF_HEADER_LINES = 2
FETCH_OUTCOMES = [*Outcome, RATE_LIMITED, EXTRACT_FAILED, EMPTY]


def text_block(text: str) -> SafeString:
    return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', text)


def diff_block(diff: str) -> SafeString:
    rows = []
    for number, line in enumerate(diff.splitlines()):
        kind, tone = ("header", "quiet") if number < DIFF_HEADER_LINES else DIFF_TONES.get(line[:1], ("context", ""))
        rows.append((kind, f"color:{tone_colour(tone)}" if tone else "", line))
    return text_block(format_html_join("", '<span class="diff-{}" style="{}">{}</span>\n', rows))


def health_of(source: Source) -> tuple[SafeString, str]:
    """The source's health as a badge, and why it is so."""
    health, why = source_health(source, now=timezone.now())
    return badge(Source.Health(health).label, HEALTH_TONES[health], status=f"health-{health}"), why


def change_badge(change: Change) -> SafeString:
    return badge(change.get_status_display(), CHANGE_TONES[change.status], status=f"change-{change.status}")


def ledger_link(run: ScheduleRun | None) -> str:
    if run is None:
        return "none (not fetched by a run)"
    url = reverse("admin:scheduler_schedulerun_change", args=[run.pk])
    return format_html('<a href="{}">run {}</a> {}', url, run.pk, run_status_badge(run))


def snapshot_link(snapshot: Snapshot | None, missing: str) -> str:
    if snapshot is None:
        return missing
    return format_html('<a href="{}">{}</a>', reverse("admin:scraping_snapshot_change", args=[snapshot.pk]), snapshot)


def changelist_url(model_name: str, **filters) -> str:
    return f"{reverse(f'admin:scraping_{model_name}_changelist')}?{urlencode(filters)}"


class ReviewedRowsAdmin(ReviewOnlyAdmin):
    """Rows the fetches write and only their retention removes (a change goes with its snapshot):
    deleting a rejected change by hand would have it raised again, a baseline's snapshot would
    leave the source nothing to compare with."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Source)
class SourceAdmin(ScheduleOwnerAdmin):
    owner_noun, paused_because = "source", "the source is disabled"
    list_display = ["name", "url", "enabled", "health", "last_fetch", "pending_changes", "schedule_link",
                    "fetches_link"]
    list_filter = ["enabled"]
    search_fields = ["name", "url", "description"]
    readonly_fields = ["schedule_link", "health_and_why", "last_fetch", "fetches_link", "pending_changes",
                       "baseline_link"]
    fieldsets = [
        ("What to watch", {"fields": ["name", "description", "url", "extract", "expression", "ignore"]}),
        ("When", {"fields": ["every_minutes", "enabled", "schedule_link"]}),
        ("Politeness", {"fields": ["min_delay_seconds", "allowed_port"]}),
        ("What its fetches found", {"fields": ["health_and_why", "last_fetch", "fetches_link", "pending_changes",
                                               "baseline_link"]}),
    ]
    change_form_template = "admin/scraping/source/change_form.html"

    def get_fieldsets(self, request, obj=None):
        # A source not saved yet has no fetches, changes or baseline to show.
        return self.fieldsets if obj is not None else self.fieldsets[:-1]

    def owner_save(self, owner: Source) -> None:
        source_save(source=owner)

    def owner_delete(self, owner: Source) -> None:
        source_delete(source=owner)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # A source's snapshots, changes and fetches go with it (source_delete): that no one may
        # delete one of them alone does not keep the source.
        own_rows = {model._meta.verbose_name for model in (Snapshot, Change, FetchRecord)}
        return deleted, counts, perms_needed - own_rows, protected

    def get_queryset(self, request):
        pending = Count("changes", filter=Q(changes__status=Change.Status.PENDING))
        return super().get_queryset(request).select_related("schedule").annotate(pending_count=pending)

    def get_urls(self):
        test_fetch = self.admin_site.admin_view(partial(admin_views.source_test_fetch, model_admin=self))
        return [
            path("test-fetch/", test_fetch, name="scraping_source_test_fetch"),
            path("<int:source_id>/test-fetch/", test_fetch, name="scraping_source_test_fetch"),
            *super().get_urls(),
        ]

    @admin.display(description="health")
    def health(self, source: Source) -> str:
        pill, why = health_of(source)
        return format_html('<span title="{}">{}</span>', why, pill)

    @admin.display(description="health")
    def health_and_why(self, source: Source) -> str:
        return format_html("{} {}", *health_of(source))

    @admin.display(description="last fetch", ordering="last_fetch_at")
    def last_fetch(self, source: Source) -> str:
        if source.last_fetch_at is None:
            return "never"
        return format_html('{} <span title="{}">{}</span>', moment(source.last_fetch_at, zone=True),
                           source.last_detail, outcome_badge(source.last_outcome))

    @admin.display(description="pending changes", ordering="pending_count")
    def pending_changes(self, source: Source) -> str:
        if not source.pending_count:
            return "none"
        url = changelist_url("change", source__id__exact=source.pk, status__exact=Change.Status.PENDING)
        return format_html('<a href="{}">{} to review</a>', url, source.pending_count)

    @admin.display(description="fetches")
    def fetches_link(self, source: Source) -> str:
        url = changelist_url("fetchrecord", source__id__exact=source.pk)
        return format_html('<a href="{}">Fetch history</a>', url)

    @admin.display(description="baseline")
    def baseline_link(self, source: Source) -> str:
        return snapshot_link(source.baseline, "none yet: the next content fetched becomes the baseline")


def decide_selected(decision: str, verb: str):
    """A list action deciding every selected change the way its page's button does."""

    def decide(model_admin, request, queryset) -> None:
        for change in queryset.select_related("source"):
            change_decide(request, change, decision)

    decide.__name__ = f"{verb.lower()}_selected"
    return admin.action(description=f"{verb} the selected changes", permissions=["review"])(decide)


@admin.register(Change)
class ChangeAdmin(ReviewedRowsAdmin):
    list_display = ["source", "raised", "status_badge", "reviewed_by", "reviewed"]
    list_filter = ["status", "source"]
    list_select_related = ["source"]
    ordering = ["-raised_at", "-id"]
    actions = [decide_selected(Change.Status.APPROVED, "Approve"), decide_selected(Change.Status.REJECTED, "Reject"),
               decide_selected(Change.Status.IGNORED, "Ignore")]
    fields = ["source", "status_badge", "raised", "run_link", "reviewed_by", "reviewed", "diff_lines", "before_text",
              "after_text"]
    readonly_fields = fields
    change_form_template = "admin/scraping/change/change_form.html"

    raised = run_time("raised_at", "raised at")
    reviewed = run_time("reviewed_at", "reviewed at")

    def has_review_permission(self, request) -> bool:
        return may_review(request.user)

    def get_urls(self):
        return [
            path("<int:change_id>/review/", self.admin_site.admin_view(admin_views.change_review_view),
                 name="scraping_change_review"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "may_review": may_review(request.user)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="status")
    def status_badge(self, change: Change) -> str:
        return change_badge(change)

    @admin.display(description="run")
    def run_link(self, change: Change) -> str:
        return ledger_link(linked(change, "run"))

    @admin.display(description="diff")
    def diff_lines(self, change: Change) -> str:
        return diff_block(change.diff)

    @admin.display(description="before (the baseline when it was raised)")
    def before_text(self, change: Change) -> str:
        before = linked(change, "before")
        if before is None:
            return "removed since"
        return format_html("{}{}", snapshot_link(before, ""), text_block(before.text))

    @admin.display(description="after (the new content)")
    def after_text(self, change: Change) -> str:
        return format_html("{}{}", snapshot_link(change.after, ""), text_block(change.after.text))


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        # The outcomes a fetch can have: a DISTINCT over the fetch history would read every row.
        return [(outcome, outcome.replace("_", " ")) for outcome in FETCH_OUTCOMES]

    def queryset(self, request, queryset):
        return queryset.filter(outcome=self.value()) if self.value() else queryset


@admin.register(FetchRecord)
class FetchRecordAdmin(PageCompletingAdmin, ReviewedRowsAdmin):
    """Every fetch of every source, newest first: a row per fetch, so like the run ledger it never
    counts the whole table and sorts only by the indexed fetch time."""

    list_display = ["fetched", "source", "outcome_badge", "status", "short_detail", "bytes", "took", "run_link",
                    "change_link"]
    list_filter = [OutcomeFilter, "source"]
    list_select_related = ["source"]
    sortable_by = ["fetched"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = None
    fields = ["source", "fetched", "outcome_badge", "status", "detail", "final_url", "bytes", "took", "run_link",
              "change_link", "snapshot_link"]
    readonly_fields = fields

    def page_complete(self, rows: list[FetchRecord]) -> None:
        runs = ScheduleRun.objects.in_bulk({row.run_id for row in rows if row.run_id})
        changes = Change.objects.only("status").in_bulk({row.change_id for row in rows if row.change_id})
        for row in rows:
            row.ledger_run, row.raised_change = runs.get(row.run_id), changes.get(row.change_id)

    def completed(self, record: FetchRecord) -> FetchRecord:
        if not hasattr(record, "ledger_run"):  # the detail page: one record, its own queries
            self.page_complete([record])
        return record

    @admin.display(description="fetched at", ordering="fetched_at")
    def fetched(self, record: FetchRecord) -> str:
        return moment(record.fetched_at, zone=True)

    @admin.display(description="outcome")
    def outcome_badge(self, record: FetchRecord) -> str:
        return outcome_badge(record.outcome)

    @admin.display(description="detail")
    def short_detail(self, record: FetchRecord) -> str:
        return format_html('<span title="{}">{}</span>', record.detail, Truncator(record.detail).chars(60))

    @admin.display(description="took")
    def took(self, record: FetchRecord) -> str:
        return duration_in_words(timedelta(milliseconds=record.duration_ms))

    @admin.display(description="run")
    def run_link(self, record: FetchRecord) -> str:
        return ledger_link(self.completed(record).ledger_run)

    @admin.display(description="change")
    def change_link(self, record: FetchRecord) -> str:
        change = self.completed(record).raised_change
        if change is None:
            return self.get_empty_value_display()
        url = reverse("admin:scraping_change_change", args=[change.pk])
        return format_html('<a href="{}">change {}</a> {}', url, change.pk, change_badge(change))

    @admin.display(description="snapshot")
    def snapshot_link(self, record: FetchRecord) -> str:
        return snapshot_link(linked(record, "snapshot"), self.get_empty_value_display())


@admin.register(Snapshot)
class SnapshotAdmin(ReviewedRowsAdmin):
    list_display = ["source", "first_seen", "last_seen", "hash_prefix", "characters"]
    list_filter = ["source"]
    list_select_related = ["source"]
    fields = ["source", "content_hash", "first_seen", "last_seen", "characters", "text_shown"]
    readonly_fields = fields

    first_seen = run_time("first_seen_at", "first seen")
    last_seen = run_time("last_seen_at", "last seen")

    def get_queryset(self, request):
        # The list shows how long each text is without reading the texts.
        return super().get_queryset(request).annotate(length=Length("text")).defer("text")

    @admin.display(description="hash")
    def hash_prefix(self, snapshot: Snapshot) -> str:
        return format_html('<code title="{}">{}</code>', snapshot.content_hash, snapshot.content_hash[:12])

    @admin.display(description="characters", ordering="length")
    def characters(self, snapshot: Snapshot) -> int:
        return snapshot.length

    @admin.display(description="text")
    def text_shown(self, snapshot: Snapshot) -> str:
        return text_block(snapshot.text)
