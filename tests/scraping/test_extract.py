"""What a source watches: readable text, CSS, XPath 1.0 or JSONPath, normalised for comparing."""

import pytest

from scraping.extract import ExtractError, Extractor, Kind

PAGE = b"""<html><head><title>Shop</title><script>track()</script><style>p {}</style></head>
<body><h1>Prices</h1><p class="price">Tea   <b>3</b> EUR</p><p class="price">Coffee 4 EUR</p>
<!-- a comment --><p id="stamp">Updated 2026-12-01 08:00</p></body></html>"""


def test_the_whole_page_reads_as_a_person_reads_it_without_scripts_styles_or_comments():
    text = Extractor(Kind.TEXT).extract(PAGE)
    assert text == "Prices\nTea 3 EUR\nCoffee 4 EUR\nUpdated 2026-12-01 08:00"


def test_a_css_selector_picks_its_elements_one_per_line():
    assert Extractor(Kind.CSS, "p.price").extract(PAGE) == "Tea 3 EUR\nCoffee 4 EUR"


def test_an_xpath_picks_elements_or_values():
    assert Extractor(Kind.XPATH, "//p[@class='price'][2]").extract(PAGE) == "Coffee 4 EUR"
    assert Extractor(Kind.XPATH, "count(//p)").extract(PAGE) == "3.0"


def test_ignore_rules_leave_lines_out_before_comparing():
    extractor = Extractor(Kind.TEXT, ignore=(r"^Updated \d{4}-",))
    assert "Updated" not in extractor.extract(PAGE)


def test_a_jsonpath_picks_values_from_a_json_response():
    body = b'{"items": [{"name": "tea", "price": 3}, {"name": "coffee", "price": 4.5}]}'
    assert Extractor(Kind.JSONPATH, "$.items[*].price").extract(body) == "3\n4.5"
    assert Extractor(Kind.JSONPATH, "$.items[?(@.name == 'tea')]").extract(body) == '{"name": "tea", "price": 3}'


@pytest.mark.parametrize(("extractor", "message"), [
    (Extractor(Kind.CSS, "p[["), "not a valid css expression"),
    (Extractor(Kind.XPATH, "//p[["), "not a valid xpath expression"),
    (Extractor(Kind.JSONPATH, "$..[?("), "not a valid jsonpath expression"),
    (Extractor(Kind.CSS, ""), "needs an expression"),
    (Extractor(Kind.TEXT, ignore=("(unclosed",)), "ignore rule '(unclosed' is not a regular expression"),
])
def test_a_bad_expression_is_refused_naming_what_is_wrong(extractor, message):
    with pytest.raises(ExtractError) as refused:
        extractor.check()
    assert message in str(refused.value)


def test_a_page_that_is_not_json_is_refused_for_a_jsonpath():
    with pytest.raises(ExtractError, match="not JSON"):
        Extractor(Kind.JSONPATH, "$.a").extract(PAGE)


def test_entities_are_never_expanded_and_nothing_is_fetched_for_a_doctype():
    body = (b'<!DOCTYPE html [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
            b"<html><body><p>&secret;</p></body></html>")
    assert "root:" not in Extractor(Kind.TEXT).extract(body)
