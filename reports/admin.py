from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from reports import admin_views
from reports.models import Report, ReportDelivery, ReportRun, ReportSection
from reports.permissions import RUN_SQL_REFUSED, may_build_report, may_run_report_sql
from reports.services import delivery_resend, report_delete, report_save
from shared.addresses import email_list
from shared.admin_owners import ScheduleOwnerAdmin
from shared.admin_pages import PageCompletingAdmin, newest_of_each
from shared.admin_review import ReviewOnlyAdmin
from shared.badges import badge, toned

# Runs and deliveries by tone (their statuses share names: ok, sent, partial, failed...).
STATUS_TONES = {"ok": "good", "sent": "good", "partial": "warning", "sending": "busy", "failed": "bad",
                "pending": "quiet"}


def status_badge(status: str, label: str) -> str:
    return badge(label, STATUS_TONES.get(status, "quiet"), status=f"report-{status}")


def delivery_status_label(delivery: ReportDelivery) -> str:
    if delivery.is_stale_sending():
        # Its worker stopped mid-send; the next run or a re-send claims it again.
        label = f"Sending since {delivery.claimed_at:%Y-%m-%d %H:%M} UTC: stale, will be sent again"
        return toned(label, "bad")
    return status_badge(delivery.status, delivery.get_status_display())


class SectionFormSet(BaseInlineFormSet):
    """One inline per kind of section; each needs its own form prefix on the one page."""

    kind: str

    @classmethod
    def get_default_prefix(cls) -> str:
        return f"{cls.kind}_sections"


class SectionForm(forms.ModelForm):
    kind: str

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Set before validation: the model's clean() checks what the kind requires.
        self.instance.kind = self.kind


class OperationsSummaryForm(SectionForm):
    kind = ReportSection.Kind.OPERATIONS_SUMMARY


class SqlSectionForm(SectionForm):
    kind = ReportSection.Kind.SQL
    user = None  # set per request by SqlSectionInline.get_formset

    def clean(self):
        # The inline's permissions already hide the editable form from others; this refuses a
        # forged POST too, since a query runs with the site's own database access.
        if self.has_changed() and not may_run_report_sql(self.user):
            raise forms.ValidationError(RUN_SQL_REFUSED.format("add or change SQL sections"))
        return super().clean()


class ReportForm(forms.ModelForm):
    user = None  # set per request by ReportAdmin.get_form

    def clean_recipients(self) -> str:
        # Whoever receives a report with SQL sections reads what its queries return with the
        # data source's access: choosing who that is needs the right to run them, on a forged
        # POST too.
        recipients = self.cleaned_data["recipients"]
        changed = set(email_list(recipients)) != set(email_list(self.instance.recipients))
        if changed and self.instance.has_sql_sections() and not may_run_report_sql(self.user):
            raise forms.ValidationError(RUN_SQL_REFUSED.format("change the recipients of a report that has SQL "
                                                               "sections"))
        return recipients


class SectionInline(admin.StackedInline):
    model = ReportSection
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=self.form.kind)

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = type(formset.form.__name__, (formset.form,), {"user": request.user})
        return formset


class OperationsSummaryInline(SectionInline):
    form = OperationsSummaryForm
    formset = type("OperationsSummaryFormSet", (SectionFormSet,), {"kind": ReportSection.Kind.OPERATIONS_SUMMARY})
    fields = ["position", "name"]
    verbose_name = "operations summary section"
    verbose_name_plural = "operations summary sections (every schedule's runs, failures, slowest runs, cleanup)"


class SqlSectionInline(SectionInline):
    form = SqlSectionForm
    formset = type("SqlSectionFormSet", (SectionFormSet,), {"kind": ReportSection.Kind.SQL})
    fields = ["position", "name", "data_source", "query", "timeout_seconds", "row_limit",
              "byte_limit", "chart", "chart_x", "chart_y"]
    verbose_name = "SQL section"
    verbose_name_plural = "SQL sections (only superusers may add or change them)"

    def has_add_permission(self, request, obj=None) -> bool:
        return may_run_report_sql(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return may_run_report_sql(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return may_run_report_sql(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return may_run_report_sql(request.user) or request.user.has_perm("reports.view_report")


@admin.register(Report)
class ReportAdmin(PageCompletingAdmin, ScheduleOwnerAdmin):
    owner_noun, paused_because = "report", "the report is disabled or has no recipients"
    list_display = ["name", "enabled", "when", "recipient_count", "schedule_link", "last_run"]
    list_filter = ["enabled"]
    search_fields = ["name", "description", "recipients"]
    inlines = [OperationsSummaryInline, SqlSectionInline]
    readonly_fields = ["schedule_link", "runs_link"]
    fieldsets = [
        (None, {"fields": ["name", "description", "recipients", "enabled"]}),
        ("When", {"fields": ["send_at", "days_of_week", "timezone", "covered_period", "schedule_link", "runs_link"]}),
    ]
    change_form_template = "admin/reports/report/change_form.html"
    form = ReportForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["may_preview"] = obj is not None and may_build_report(request.user, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def owner_save(self, owner: Report) -> None:
        report_save(report=owner)

    def owner_delete(self, owner: Report) -> None:
        report_delete(report=owner)

    # The services keep a report's schedule in step, whoever writes the report.
    def get_queryset(self, request):
        return super().get_queryset(request).select_related("schedule")

    def page_complete(self, rows: list[Report]) -> None:
        runs = newest_of_each(ReportRun.objects.all(), link="report", newest_first=("-scheduled_for", "-id"),
                              parents=Report.objects.filter(pk__in=[report.pk for report in rows]))
        for report in rows:
            report.last_report_run = runs.get(report.pk)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:report_id>/preview/", view(admin_views.report_preview), name="reports_report_preview"),
            path("<int:report_id>/preview/<int:preview_id>/", view(admin_views.report_preview_page),
                 name="reports_report_preview_page"),
            *super().get_urls(),
        ]

    @admin.display(description="when")
    def when(self, report: Report) -> str:
        days = "every day" if report.days_of_week == "*" else f"days {report.days_of_week}"
        return f"{report.send_at:%H:%M} {report.timezone}, {days}"

    @admin.display(description="recipients")
    def recipient_count(self, report: Report) -> int:
        return len(report.recipient_list())

    @admin.display(description="runs")
    def runs_link(self, report: Report) -> str:
        if report.pk is None:
            return "none yet"
        url = reverse("admin:reports_reportrun_changelist") + f"?report__id__exact={report.pk}"
        return format_html('<a href="{}">Archived runs of this report</a>', url)

    @admin.display(description="last run")
    def last_run(self, report: Report) -> str:
        run = getattr(report, "last_report_run", None)
        if run is None:
            return "never"
        url = reverse("admin:reports_reportrun_change", args=[run.pk])
        status = status_badge(run.status, run.get_status_display())
        return format_html('<a href="{}">{}: {}</a>', url, run.covered_day, status)


class ReportDeliveryInline(admin.TabularInline):
    model = ReportDelivery
    fields = ["recipient", "delivery_status", "attempts", "claimed_at", "sent_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="status")
    def delivery_status(self, delivery: ReportDelivery) -> str:
        return delivery_status_label(delivery)


@admin.register(ReportRun)
class ReportRunAdmin(PageCompletingAdmin, ReviewOnlyAdmin):
    list_display = ["report", "covered_day", "period", "run_status", "scheduled_for", "deliveries_summary", "built_at"]
    list_filter = ["status", "report"]
    date_hierarchy = "scheduled_for"
    fields = ["report", "covered_day", "period", "scheduled_for", "run_status", "error", "subject", "email",
              "files_list", "built_at"]
    readonly_fields = fields
    inlines = [ReportDeliveryInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("report")

    def page_complete(self, rows: list[ReportRun]) -> None:
        counts = (ReportDelivery.objects.filter(run__in=rows).values("run_id", "status").annotate(count=Count("id"))
                  .order_by("run_id", "status"))
        by_run = {}
        for row in counts:
            by_run.setdefault(row["run_id"], {})[row["status"]] = row["count"]
        for run in rows:
            run.delivery_counts = by_run.get(run.pk, {})

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:run_id>/email/", view(admin_views.run_email), name="reports_reportrun_email"),
            path("<int:run_id>/files/<int:file_id>/", view(admin_views.run_file), name="reports_reportrun_file"),
            *super().get_urls(),
        ]

    @admin.display(description="status")
    def run_status(self, run: ReportRun) -> str:
        return status_badge(run.status, run.get_status_display())

    @admin.display(description="covers")
    def period(self, run: ReportRun) -> str:
        return run.period_text() or "not recorded"

    @admin.display(description="deliveries")
    def deliveries_summary(self, run: ReportRun) -> str:
        if not hasattr(run, "delivery_counts"):  # the detail page: one run, one query
            self.page_complete([run])
        return ", ".join(f"{count} {ReportDelivery.Status(status).label.lower()}"
                         for status, count in run.delivery_counts.items())

    @admin.display(description="email")
    def email(self, run: ReportRun) -> str:
        if not run.html:
            return "not built"
        return format_html('<a href="{}" target="_blank">View the email as sent</a>',
                           reverse("admin:reports_reportrun_email", args=[run.pk]))

    @admin.display(description="files")
    def files_list(self, run: ReportRun) -> str:
        rows = [(reverse("admin:reports_reportrun_file", args=[run.pk, file.pk]), file.filename, file.size,
                 "" if file.attached else " (over the size limit: left out of the email)")
                for file in run.files.all()]
        return format_html_join("", '<div><a href="{}">{}</a> {} bytes{}</div>', rows) or "none"


@admin.register(ReportDelivery)
class ReportDeliveryAdmin(ReviewOnlyAdmin):
    list_display = ["recipient", "run", "delivery_status", "attempts", "claimed_at", "sent_at", "last_error"]
    list_filter = ["status", "run__report"]
    search_fields = ["recipient"]
    actions = ["resend"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("run__report")

    @admin.display(description="status")
    def delivery_status(self, delivery: ReportDelivery) -> str:
        return delivery_status_label(delivery)

    @admin.action(description="Re-send to the selected recipients", permissions=["resend"])
    def resend(self, request, queryset) -> None:
        # No SQL runs here: the archived email goes again to a recipient it was already sent to.
        for delivery in queryset.select_related("run"):
            error = delivery_resend(delivery=delivery)
            if not error:
                messages.success(request, f"Sent {delivery.run} to {delivery.recipient} again.")
            elif delivery.status == ReportDelivery.Status.SENT:
                messages.error(request, f"Could not send {delivery.run} to {delivery.recipient} again: {error}. "
                                        "It stays marked sent: the earlier copy was delivered.")
            else:
                messages.error(request, f"Could not send {delivery.run} to {delivery.recipient}: {error}")

    def has_resend_permission(self, request) -> bool:
        # Sending mail in the site's name is a change, not a review: view permission is not enough.
        return request.user.has_perm("reports.change_reportdelivery")
