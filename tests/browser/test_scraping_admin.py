"""A reviewer reads a change's coloured diff and approves it, in a real browser."""

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By

from scraping.changes import content_hash, unified_diff
from scraping.models import Change, Snapshot, Source
from scraping.sources import source_save

pytestmark = pytest.mark.django_db(transaction=True)

GREEN, RED = "rgba(26, 127, 55, 1)", "rgba(186, 33, 33, 1)"  # shared.badges' good and bad tones


def raised_change(before: str, after: str) -> Change:
    source = source_save(source=Source(name="Tea prices", url="https://example.com/prices"))
    now = timezone.now()
    baseline, new = (Snapshot.objects.create(source=source, content_hash=content_hash(text), text=text,
                                             first_seen_at=now, last_seen_at=now) for text in (before, after))
    Source.objects.filter(pk=source.pk).update(baseline=baseline)
    return Change.objects.create(source=source, before=baseline, after=new, diff=unified_diff(before, after),
                                 raised_at=now)


def test_a_reviewer_sees_the_diff_in_colour_and_approves_the_change(logged_in):
    change = raised_change("Tea 3 EUR\nCoffee 2 EUR", "Tea 4 EUR\nCoffee 2 EUR")
    logged_in.get(f"{logged_in.base_url}/admin/scraping/change/{change.pk}/change/")

    added = logged_in.find_element(By.CSS_SELECTOR, ".field-diff_lines .diff-added")
    removed = logged_in.find_element(By.CSS_SELECTOR, ".field-diff_lines .diff-removed")
    assert (added.text, added.value_of_css_property("color")) == ("+Tea 4 EUR", GREEN)
    assert (removed.text, removed.value_of_css_property("color")) == ("-Tea 3 EUR", RED)
    assert "Pending review" in logged_in.find_element(By.CSS_SELECTOR, ".field-status_badge").text

    logged_in.find_element(By.CSS_SELECTOR, "button[value=approved]").click()

    assert "it is now the baseline of Tea prices" in logged_in.find_element(By.CSS_SELECTOR, ".messagelist").text
    status = logged_in.find_element(By.CSS_SELECTOR, ".field-status_badge .status-badge")
    assert status.text == "Approved: the new baseline"
    assert logged_in.find_elements(By.CSS_SELECTOR, "button[value=approved]") == []
    assert Source.objects.get().baseline_id == change.after_id
