"""Sources end to end in one process: saved with their schedule, fetched through the gate, robots.txt
and the host's limits, their content kept as snapshots, changes raised and reviewed."""

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleRun
from scraping.changes import NotPending, change_review
from scraping.health import FAILING_AFTER, source_health
from scraping.models import Change, FetchRecord, Snapshot, Source
from scraping.source_fetch import Deferred, source_fetch
from scraping.sources import SCRAPE_TASK, source_delete, source_save

pytestmark = pytest.mark.django_db


def html(*paragraphs: str) -> bytes:
    return ("<html><body>" + "".join(f"<p class='price'>{text}</p>" for text in paragraphs)
            + "<p>Updated just now</p></body></html>").encode()


def serve(site, body: bytes, status: int = 200, **headers) -> None:
    site.pages["/prices"] = lambda page: page.reply(status, body, Content_Type="text/html", **headers)


@pytest.fixture
def source(fetching):
    return source_save(source=Source(name="Tea prices", url=fetching.url("shop.test", "/prices"), extract="css",
                                     expression="p.price", allowed_port=fetching.port, every_minutes=10))


def fetch(source):
    source.refresh_from_db()
    return source_fetch(source=source)


def test_saving_a_source_creates_its_schedule_and_deleting_it_deletes_the_schedule(source):
    schedule = PeriodicTask.objects.get(pk=source.schedule_id)
    assert (schedule.task, json.loads(schedule.kwargs), schedule.interval.every) == (SCRAPE_TASK,
                                                                                   {"source_id": source.pk}, 10)
    assert schedule.enabled
    source.enabled, source.every_minutes = False, 30
    source_save(source=source)
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.interval.every) == (False, 30)
    source_delete(source=source)
    assert not PeriodicTask.objects.filter(pk=schedule.pk).exists()


@pytest.mark.parametrize(("url", "rule"), [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("ftp://shop.test/prices", "only http and https"),
    ("http://user:secret@shop.test/", "user"),
    ("http://shop.test:8080/", "port"),
])
def test_saving_refuses_what_the_gate_refuses_naming_the_rule_and_stores_nothing(fetching, url, rule):
    with pytest.raises(ValidationError) as refused:
        source_save(source=Source(name="Bad", url=url))
    assert rule in " ".join(refused.value.message_dict["url"])
    assert not Source.objects.exists() and not PeriodicTask.objects.filter(name__startswith="Scrape:").exists()


def test_a_bad_expression_or_ignore_rule_is_refused_naming_its_field(fetching):
    with pytest.raises(ValidationError) as refused:
        source_save(source=Source(name="Bad", url="https://example.com/", extract="xpath", expression="//p[[",
                                  ignore="/[unclosed/"))
    assert set(refused.value.message_dict) == {"expression", "ignore"}


def test_the_first_content_becomes_the_baseline_and_the_same_content_is_no_change(source, fetching):
    serve(fetching, html("Tea 3 EUR"))
    first = fetch(source)
    assert first.outcome == "fetched" and first.output["snapshot"] == "new" and first.output["change"] is None
    source.refresh_from_db()
    assert source.baseline.text == "Tea 3 EUR"
    second = fetch(source)
    assert second.output["snapshot"] == "seen before" and second.output["change"] is None
    assert Snapshot.objects.count() == 1 and FetchRecord.objects.filter(source=source).count() == 2


@pytest.fixture
def changed(source, fetching):
    serve(fetching, html("Tea 3 EUR"))
    fetch(source)
    serve(fetching, html("Tea 4 EUR", "Coffee 5 EUR"))
    return fetch(source)


def test_new_content_raises_one_change_with_a_diff_however_often_it_is_seen(changed, source):
    change = Change.objects.get()
    assert changed.output["change"] == change.pk and change.status == Change.Status.PENDING
    assert "-Tea 3 EUR" in change.diff and "+Tea 4 EUR" in change.diff and "+Coffee 5 EUR" in change.diff
    assert (change.before.text, change.after.text) == ("Tea 3 EUR", "Tea 4 EUR\nCoffee 5 EUR")
    fetch(source)
    assert Change.objects.count() == 1


def test_approving_makes_the_new_content_the_baseline(changed, source, fetching):
    change = change_review(change=Change.objects.get(), decision=Change.Status.APPROVED, reviewer="ana",
                           now=timezone.now())
    source.refresh_from_db()
    assert source.baseline == change.after and change.reviewed_by == "ana"
    assert fetch(source).output["change"] is None
    with pytest.raises(NotPending, match="already approved"):
        change_review(change=change, decision=Change.Status.REJECTED, reviewer="bo", now=timezone.now())


def test_rejected_content_keeps_the_baseline_and_is_not_raised_again_even_after_other_content(
        changed, source, fetching):
    change_review(change=Change.objects.get(), decision=Change.Status.REJECTED, reviewer="ana", now=timezone.now())
    source.refresh_from_db()
    assert source.baseline.text == "Tea 3 EUR"
    serve(fetching, html("Tea 3 EUR"))
    fetch(source)
    serve(fetching, html("Tea 4 EUR", "Coffee 5 EUR"))
    assert fetch(source).output["change"] is None
    assert Change.objects.count() == 1


def test_ignored_content_is_raised_again_only_when_it_comes_back(changed, source, fetching):
    change_review(change=Change.objects.get(), decision=Change.Status.IGNORED, reviewer="ana", now=timezone.now())
    assert fetch(source).output["change"] is None
    serve(fetching, html("Tea 3 EUR"))
    fetch(source)
    serve(fetching, html("Tea 4 EUR", "Coffee 5 EUR"))
    assert fetch(source).output["change"] is not None


def test_ignore_rules_leave_lines_out_before_comparing(source, fetching):
    source.expression, source.ignore = "p", "Updated\n/^Visitors: \\d+$/"
    source_save(source=source)
    serve(fetching, b"<p>Tea 3 EUR</p><p>Updated 10:00</p><p>Visitors: 12</p>")
    fetch(source)
    serve(fetching, b"<p>Tea 3 EUR</p><p>Updated 10:05</p><p>Visitors: 13</p>")
    assert fetch(source).output["snapshot"] == "seen before"
    assert Snapshot.objects.get().text == "Tea 3 EUR"


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (500, b"<p class='price'>Server error page</p>", "http_error"),
    (200, b"<p class='other'>no prices today</p>", "empty"),
])
def test_an_error_or_an_empty_extract_is_never_a_change(changed, source, fetching, status, body, outcome):
    serve(fetching, body, status=status)
    result = fetch(source)
    assert result.outcome == outcome and not result.succeeded
    assert Change.objects.count() == 1 and Snapshot.objects.count() == 2


def test_a_304_is_not_modified_and_the_validators_are_sent(source, fetching):
    serve(fetching, html("Tea 3 EUR"), ETag='"v1"')
    fetch(source)

    def conditional(page):
        if page.headers.get("If-None-Match") == '"v1"':
            page.reply(304)
        else:
            page.reply(200, html("Tea 9 EUR"), Content_Type="text/html")
    fetching.pages["/prices"] = conditional
    result = fetch(source)
    assert result.outcome == "not_modified" and result.succeeded
    assert source_health(Source.objects.get(pk=source.pk), now=timezone.now())[0] == Source.Health.OK


def test_robots_txt_blocks_the_source_and_the_page_is_not_fetched(source, fetching):
    fetching.pages["/robots.txt"] = lambda page: page.reply(200, b"User-agent: *\nDisallow: /prices\n")
    result = fetch(source)
    assert result.outcome == "disallowed_by_robots"
    assert [path for path, _ in fetching.requests] == ["/robots.txt"]
    health, why = source_health(Source.objects.get(pk=source.pk), now=timezone.now())
    assert health == Source.Health.BLOCKED and "robots.txt" in why


def test_a_second_fetch_within_the_hosts_interval_is_deferred_with_its_wait(source, fetching, settings):
    settings.SCRAPER_HOST_INTERVAL_SECONDS = 30
    serve(fetching, html("Tea 3 EUR"))
    fetching.pages["/robots.txt"] = lambda page: page.reply(404)
    with pytest.raises(Deferred) as deferred:
        fetch(source)  # robots.txt took the host's turn
    assert 25 < deferred.value.seconds <= 30
    assert [path for path, _ in fetching.requests] == ["/robots.txt"]
    assert not FetchRecord.objects.exists()


def test_a_429_pauses_the_host_for_its_retry_after(source, fetching):
    serve(fetching, b"slow down", status=429, Retry_After="120")
    result = fetch(source)
    assert result.outcome == "rate_limited" and result.retryable and result.retry_after_seconds == 120
    with pytest.raises(Deferred) as deferred:
        fetch(source)
    assert 110 < deferred.value.seconds <= 120


def test_failures_in_a_row_make_the_source_failing(source, fetching):
    serve(fetching, b"down", status=502)
    for _ in range(FAILING_AFTER):
        fetch(source)
    health, why = source_health(Source.objects.get(pk=source.pk), now=timezone.now())
    assert health == Source.Health.FAILING and "HTTP 502" in why


def test_a_source_being_fetched_is_not_fetched_twice_at_once(source, fetching):
    Source.objects.filter(pk=source.pk).update(claimed_by="other:1:ab", claimed_until=timezone.now()
                                               + timezone.timedelta(minutes=1))
    result = fetch(source)
    assert result.outcome == "skipped" and "other:1:ab" in result.detail
    # Only its host's robots.txt was read (the claim is taken once the page's turn has come).
    assert [path for path, _ in fetching.requests] == ["/robots.txt"]


def test_scrape_source_command_runs_it_through_the_ledger(source, fetching):
    serve(fetching, html("Tea 3 EUR"))
    out = io.StringIO()
    call_command("scrape", "--source", "Tea prices", stdout=out)
    run = ScheduleRun.objects.get()
    assert (run.kind, run.status, run.schedule_id) == (ScheduleRun.Kind.MANUAL, ScheduleRun.Status.SUCCEEDED,
                                                       source.schedule_id)
    assert run.output["outcome"] == "fetched" and FetchRecord.objects.get().run == run
    assert "Tea prices: fetched" in out.getvalue() and f"run {run.pk}" in out.getvalue()


def test_scrape_source_command_fails_and_the_ledger_says_why(source, fetching):
    fetching.pages["/robots.txt"] = lambda page: page.reply(200, b"User-agent: *\nDisallow: /\n")
    with pytest.raises(CommandError, match="disallowed_by_robots"):
        call_command("scrape", "--source", "Tea prices", stdout=io.StringIO())
    run = ScheduleRun.objects.get()
    assert run.status == ScheduleRun.Status.FAILED and run.output["outcome"] == "disallowed_by_robots"


def test_a_run_that_found_another_fetch_of_its_source_running_is_recorded_skipped_not_succeeded(source, fetching):
    serve(fetching, html("Tea 3 EUR"))
    Source.objects.filter(pk=source.pk).update(claimed_by="other:1:ab", claimed_until=timezone.now()
                                               + timezone.timedelta(minutes=1))
    with pytest.raises(CommandError, match=r"not fetched: another fetch of this source is running \(other:1:ab\)"):
        call_command("scrape", "--source", "Tea prices", stdout=io.StringIO())
    run = ScheduleRun.objects.get()
    # Skipped counts as neither a success nor a failure for the schedule's health; the other
    # fetch's own run says what the page held.
    assert (run.status, run.output["outcome"]) == (ScheduleRun.Status.SKIPPED, "skipped")
    assert "other:1:ab" in run.reason


def test_scrape_source_command_names_the_sources_when_the_name_is_unknown(source):
    with pytest.raises(CommandError, match="No source named 'Nope'; sources: 'Tea prices'"):
        call_command("scrape", "--source", "Nope")


def test_the_operations_summary_counts_the_days_fetches_by_outcome_and_the_changes(changed, source, fetching):
    from datetime import timedelta

    from reports.models import Report
    from reports.sections import CoveredPeriod, operations_summary_tables

    serve(fetching, b"down", status=502)
    fetch(source)
    report = Report(name="Ops", timezone="UTC", covered_period=Report.Period.LAST_24_HOURS)
    (*_, scraping) = operations_summary_tables(CoveredPeriod.of(report, timezone.now() + timedelta(minutes=1)))
    assert scraping.title == "Scraping"
    assert scraping.rows == [("Tea prices", 3, "fetched 2, http error 1", 1, 1)]
