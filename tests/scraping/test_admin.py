"""Scraping in the admin: sources and their health, the Test fetch, reviewing changes, the history."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django_celery_beat.models import PeriodicTask

from scraping.changes import content_hash, unified_diff
from scraping.models import Change, FetchRecord, Snapshot, Source
from scraping.sources import SCRAPE_TASK, source_save
from tests.builders import ledger_run
from tests.scraping.conftest import SITE_ADDRESS
from tests.scraping.pages import LOOPBACK

pytestmark = pytest.mark.django_db

PAGE = b"<html><body><h1>Prices</h1><p class='price'>Tea 3 EUR</p><p>Updated today</p></body></html>"


@pytest.fixture
def loopback_allowed(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK


@pytest.fixture
def viewer_client(client, django_user_model):
    """A staff member who may look at everything in scraping but change nothing."""
    user = django_user_model.objects.create_user("viewer", "viewer@example.com", "pw-for-tests", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="scraping",
                                                        codename__startswith="view_"))
    client.force_login(user)
    return client


def source_form(**fields) -> dict:
    data = {"name": "Tea prices", "description": "", "url": "https://example.com/prices", "extract": "css",
            "expression": "p.price", "ignore": "", "every_minutes": "30", "enabled": "on",
            "min_delay_seconds": "", "allowed_port": ""}
    return {**data, **fields}


def saved_source(name: str = "Tea prices", **fields) -> Source:
    return source_save(source=Source(name=name, url=fields.pop("url", "https://example.com/prices"), **fields))


def site_source(site, **fields) -> Source:
    return saved_source(url=f"http://{SITE_ADDRESS}:{site.port}/", extract="css", expression="p.price",
                        allowed_port=site.port, **fields)


def snapshot(source: Source, text: str) -> Snapshot:
    now = timezone.now()
    return Snapshot.objects.create(source=source, content_hash=content_hash(text), text=text, first_seen_at=now,
                                   last_seen_at=now)


def pending_change(source: Source, before: str = "Tea 3 EUR", after: str = "Tea 4 EUR", **fields) -> Change:
    """A change raised from `before` (the source's baseline) to `after`, as a fetch raises one."""
    baseline, new = snapshot(source, before), snapshot(source, after)
    Source.objects.filter(pk=source.pk).update(baseline=baseline)
    return Change.objects.create(source=source, before=baseline, after=new, diff=unified_diff(before, after),
                                 raised_at=timezone.now(), **fields)


def review(client, change: Change, decision: str):
    return client.post(reverse("admin:scraping_change_review", args=[change.pk]), {"decision": decision})


def shown_messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_source_list_shows_each_sources_health_and_links_its_pending_changes(staff_client):
    saved_source("Never fetched")
    failing = saved_source("Timing out", url="https://example.org/")
    Source.objects.filter(pk=failing.pk).update(last_fetch_at=timezone.now(), last_outcome="timed_out",
                                                last_detail="read timed out", failures_in_row=3)
    watched = saved_source("Tea prices", url="https://example.net/")
    pending_change(watched)
    pending_change(watched, before="Tea 5 EUR", after="Tea 6 EUR")
    pending_change(watched, before="Tea 7 EUR", after="Tea 8 EUR", status=Change.Status.APPROVED)

    page = staff_client.get(reverse("admin:scraping_source_changelist")).content.decode()
    assert "status-health-new" in page and "Not fetched yet" in page
    assert "status-health-failing" in page and 'title="3 failed fetches in a row; last: read timed out"' in page
    assert "status-fetch-timed_out" in page
    pending_url = (reverse("admin:scraping_change_changelist")
                   + f"?source__id__exact={watched.pk}&status__exact=pending")
    assert f'<a href="{escape(pending_url)}">2 to review</a>' in page
    history_url = reverse("admin:scraping_fetchrecord_changelist") + f"?source__id__exact={watched.pk}"
    assert escape(history_url) in page
    assert reverse("admin:django_celery_beat_periodictask_change", args=[watched.schedule_id]) in page


@pytest.mark.parametrize(("url", "rule"), [
    ("http://169.254.169.254/latest/meta-data/", "link-local, where cloud metadata services answer"),
    ("file:///etc/passwd", "only http and https URLs are fetched, not file"),
])
def test_a_url_the_gate_refuses_is_shown_on_the_url_field_and_nothing_is_stored(staff_client, url, rule):
    response = staff_client.post(reverse("admin:scraping_source_add"), source_form(url=url))
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["url"]
    assert error.startswith("Refused by the gate:") and rule in error
    assert not Source.objects.exists() and not PeriodicTask.objects.filter(task=SCRAPE_TASK).exists()


def test_a_bad_expression_is_shown_on_its_field(staff_client):
    response = staff_client.post(reverse("admin:scraping_source_add"), source_form(extract="xpath", expression="//p[["))
    assert "Not a valid xpath expression" in response.context["adminform"].form.errors["expression"][0]
    assert not Source.objects.exists()


def test_saving_a_source_creates_its_schedule_and_its_page_links_it(staff_client):
    response = staff_client.post(reverse("admin:scraping_source_add"), source_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    source = Source.objects.get(name="Tea prices")
    schedule = source.schedule
    assert (schedule.task, schedule.kwargs, schedule.enabled) == (SCRAPE_TASK, f'{{"source_id": {source.pk}}}', True)
    assert (schedule.interval.every, schedule.interval.period) == (30, "minutes")

    page = staff_client.get(reverse("admin:scraping_source_change", args=[source.pk])).content.decode()
    assert reverse("admin:django_celery_beat_periodictask_change", args=[schedule.pk]) in page
    assert reverse("admin:scraping_source_test_fetch", args=[source.pk]) in page and 'value="Test fetch"' in page


def test_deleting_sources_deletes_their_schedules_and_everything_their_fetches_stored(staff_client):
    sources = [saved_source("One"), saved_source("Two")]
    fetch_records(sources[0], 2)
    listed = reverse("admin:scraping_source_changelist")
    confirm = staff_client.post(listed, {"action": "delete_selected", "_selected_action": [s.pk for s in sources]})
    assert "<li>Fetch records: 2</li>" in confirm.content.decode() and not confirm.context["perms_lacking"]
    staff_client.post(listed, {"action": "delete_selected", "_selected_action": [s.pk for s in sources], "post": "yes"})
    assert not Source.objects.exists() and not PeriodicTask.objects.filter(task=SCRAPE_TASK).exists()
    assert not Snapshot.objects.exists() and not Change.objects.exists() and not FetchRecord.objects.exists()


def test_one_source_is_deleted_from_its_page(staff_client):
    source = saved_source()
    fetch_records(source, 2)
    response = staff_client.post(reverse("admin:scraping_source_delete", args=[source.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Source.objects.exists() and not PeriodicTask.objects.filter(task=SCRAPE_TASK).exists()


def test_a_test_fetch_shows_the_extract_escaped_and_stores_nothing(staff_client, site, loopback_allowed):
    site.pages["/"] = lambda page: page.reply(
        200, PAGE.replace(b"Tea 3 EUR", b"Tea 3 EUR &lt;script&gt;alert(1)&lt;/script&gt;"), Content_Type="text/html")
    source = site_source(site)
    response = staff_client.post(reverse("admin:scraping_source_test_fetch", args=[source.pk]),
                                 source_form(url=source.url, allowed_port=str(site.port)))
    page = response.content.decode()
    assert response.status_code == 200 and "Nothing was stored" in page
    assert "status-fetch-fetched" in page and "no rules, anything may be fetched" in page
    assert "Tea 3 EUR &lt;script&gt;alert(1)&lt;/script&gt;</pre>" in page and "<script>alert" not in page
    assert [path for path, _ in site.requests] == ["/robots.txt", "/"]
    assert not Snapshot.objects.exists() and not FetchRecord.objects.exists() and not Change.objects.exists()
    source.refresh_from_db()
    assert source.last_fetch_at is None and source.baseline_id is None


def test_a_test_fetch_tries_the_forms_values_before_they_are_saved(staff_client, site, loopback_allowed):
    site.pages["/prices"] = lambda page: page.reply(200, PAGE, Content_Type="text/html")
    form = source_form(name="", url=f"http://{SITE_ADDRESS}:{site.port}/prices", extract="xpath",
                       expression="//h1", allowed_port=str(site.port))
    page = staff_client.post(reverse("admin:scraping_source_test_fetch"), form).content.decode()
    assert ">Prices</pre>" in page and "Nothing was stored" in page
    assert not Source.objects.exists()


def test_a_test_fetch_lists_the_redirects_it_followed(staff_client, site, loopback_allowed):
    site.pages["/old"] = lambda page: page.reply(301, Location="/prices")
    site.pages["/prices"] = lambda page: page.reply(200, PAGE, Content_Type="text/html")
    form = source_form(url=f"http://{SITE_ADDRESS}:{site.port}/old", allowed_port=str(site.port))
    page = staff_client.post(reverse("admin:scraping_source_test_fetch"), form).content.decode()
    assert f'<ol id="test-fetch-redirects"><li>http://{SITE_ADDRESS}:{site.port}/prices</li></ol>' in page
    assert ">Tea 3 EUR</pre>" in page


def test_a_test_fetch_of_a_refused_url_sends_nothing_and_says_why(staff_client, site, loopback_allowed):
    source = site_source(site)
    response = staff_client.post(reverse("admin:scraping_source_test_fetch", args=[source.pk]),
                                 source_form(url=source.url, allowed_port=""))
    page = response.content.decode()
    assert "Nothing was fetched" in page and f"port {site.port} is not allowed" in page
    assert site.requests == []


def test_a_get_of_the_test_fetch_url_fetches_nothing(staff_client, site, loopback_allowed):
    site.pages["/"] = lambda page: page.reply(200, PAGE, Content_Type="text/html")
    source = site_source(site)
    response = staff_client.get(reverse("admin:scraping_source_test_fetch", args=[source.pk]))
    assert response.status_code == 405
    assert site.requests == []


def test_a_test_fetch_without_the_forms_csrf_token_is_refused(staff_client, site, loopback_allowed):
    source = site_source(site)
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = staff_client.cookies
    strict.get(reverse("admin:scraping_source_change", args=[source.pk]))  # sets the CSRF cookie, as a browser has it
    assert "csrftoken" in strict.cookies
    response = strict.post(reverse("admin:scraping_source_test_fetch", args=[source.pk]),
                           source_form(url=source.url, allowed_port=str(site.port)))
    assert response.status_code == 403 and site.requests == []


def test_staff_who_may_only_view_can_neither_test_fetch_nor_review(viewer_client, site, loopback_allowed):
    source = site_source(site)
    change = pending_change(source)
    response = viewer_client.post(reverse("admin:scraping_source_test_fetch", args=[source.pk]),
                                  source_form(url=source.url, allowed_port=str(site.port)))
    assert response.status_code == 403 and site.requests == []
    assert review(viewer_client, change, "approved").status_code == 403
    change.refresh_from_db()
    assert change.status == Change.Status.PENDING
    page = viewer_client.get(reverse("admin:scraping_change_change", args=[change.pk])).content.decode()
    assert "Approve" not in page


def test_approving_a_change_makes_its_content_the_baseline(staff_client):
    change = pending_change(saved_source())
    response = review(staff_client, change, "approved")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:scraping_change_change", args=[change.pk])
    assert "it is now the baseline of Tea prices" in shown_messages(response)[0]
    change.refresh_from_db()
    assert (change.status, change.reviewed_by) == (Change.Status.APPROVED, "staff")
    assert Source.objects.get().baseline_id == change.after_id


def test_rejecting_a_change_keeps_the_baseline(staff_client):
    change = pending_change(saved_source())
    review(staff_client, change, "rejected")
    change.refresh_from_db()
    assert change.status == Change.Status.REJECTED
    assert Source.objects.get().baseline_id == change.before_id


def test_a_second_decision_on_a_change_warns_and_changes_nothing(staff_client):
    change = pending_change(saved_source())
    review(staff_client, change, "approved")
    response = review(staff_client, change, "ignored")
    warning = list(get_messages(response.wsgi_request))[-1]
    assert (warning.level_tag, str(warning)) == (
        "warning", "Nothing was changed: this change was already approved by staff.")
    change.refresh_from_db()
    assert change.status == Change.Status.APPROVED


def test_an_unknown_decision_is_refused(staff_client):
    change = pending_change(saved_source())
    assert review(staff_client, change, "deleted").status_code == 400


def test_a_pending_change_shows_its_diff_escaped_both_texts_and_its_run(staff_client):
    source = saved_source()
    run = ledger_run(source.schedule)
    change = pending_change(source, before="Tea 3 EUR\nCoffee 2 EUR",
                            after="Tea 3 EUR\n<script>alert(1)</script>", run=run)
    page = staff_client.get(reverse("admin:scraping_change_change", args=[change.pk])).content.decode()
    assert ('<span class="diff-added" style="color:#1a7f37">+&lt;script&gt;alert(1)&lt;/script&gt;</span>'
            in page)
    assert '<span class="diff-removed" style="color:#ba2121">-Coffee 2 EUR</span>' in page
    assert "<script>alert(1)" not in page
    assert "Tea 3 EUR\nCoffee 2 EUR</pre>" in page and "Tea 3 EUR\n&lt;script&gt;alert(1)&lt;/script&gt;</pre>" in page
    assert reverse("admin:scheduler_schedulerun_change", args=[run.pk]) in page
    assert 'value="approved"' in page and 'value="rejected"' in page and 'value="ignored"' in page
    assert reverse("admin:scraping_change_review", args=[change.pk]) in page


def test_a_decided_change_offers_no_decision(staff_client):
    change = pending_change(saved_source(), status=Change.Status.IGNORED)
    page = staff_client.get(reverse("admin:scraping_change_change", args=[change.pk])).content.decode()
    assert "status-change-ignored" in page and 'value="approved"' not in page


def test_the_list_action_approves_the_selected_changes(staff_client):
    first, second = pending_change(saved_source("One")), pending_change(saved_source("Two"))
    staff_client.post(reverse("admin:scraping_change_changelist"),
                      {"action": "approve_selected", "_selected_action": [first.pk, second.pk]})
    assert set(Change.objects.values_list("status", flat=True)) == {Change.Status.APPROVED}
    assert sorted(Source.objects.values_list("baseline_id", flat=True)) == sorted([first.after_id, second.after_id])


def fetch_records(source: Source, count: int) -> None:
    change = pending_change(source, before=f"Tea {count}", after=f"Tea {count + 1}")
    run = ledger_run(source.schedule)
    FetchRecord.objects.bulk_create(
        FetchRecord(source=source, run=run, fetched_at=timezone.now() - timedelta(minutes=number),
                    outcome=outcome, status=status, detail=f"HTTP {status}", bytes=120, duration_ms=250,
                    change=change if number == 0 else None)
        for number, (outcome, status) in enumerate([("fetched", 200), ("http_error", 500)] * (count // 2)))


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_fetch_history_shows_outcomes_runs_and_changes_in_the_same_queries_for_any_page(staff_client):
    url = reverse("admin:scraping_fetchrecord_changelist")
    fetch_records(saved_source("One"), 2)
    few = queries_for(staff_client, url)
    fetch_records(saved_source("Two"), 12)
    assert queries_for(staff_client, url) == few

    page = staff_client.get(url).content.decode()
    assert "status-fetch-fetched" in page and "status-fetch-http_error" in page and "0.2 s" in page
    assert "status-change-pending" in page and "status-run-succeeded" in page
    assert reverse("admin:scraping_fetchrecord_add") not in page and "delete_selected" not in page


def test_the_fetch_history_filters_by_outcome(staff_client):
    fetch_records(saved_source(), 4)
    response = staff_client.get(reverse("admin:scraping_fetchrecord_changelist") + "?outcome=http_error")
    assert {row.outcome for row in response.context["cl"].result_list} == {"http_error"}


def test_the_source_list_does_not_query_once_per_row(staff_client):
    url = reverse("admin:scraping_source_changelist")
    pending_change(saved_source("One"))
    few = queries_for(staff_client, url)
    for number in range(6):
        pending_change(saved_source(f"More {number}"))
    assert queries_for(staff_client, url) == few


def test_a_snapshot_is_listed_by_its_hash_and_length_and_shows_its_text_escaped(staff_client):
    stored = snapshot(saved_source(), "<b>Tea</b> 3 EUR")
    page = staff_client.get(reverse("admin:scraping_snapshot_changelist")).content.decode()
    assert f">{stored.content_hash[:12]}</code>" in page and '<td class="field-characters">16</td>' in page
    page = staff_client.get(reverse("admin:scraping_snapshot_change", args=[stored.pk])).content.decode()
    assert "&lt;b&gt;Tea&lt;/b&gt; 3 EUR</pre>" in page
