"""What a source watches on a fetched page: its readable text, what a CSS selector or an XPath 1.0
expression picks, or what a JSONPath picks from a JSON response; then normalised for comparing.

The page is untrusted. HTML is parsed by lxml with entities left unresolved and no network
access; XPath is lxml's 1.0, which has no functions that read files or the environment (the
XPath 2/3 and jq functions behind changedetection.io's 2026 advisories are not offered); JSON is
parsed by the standard library and queried by jsonpath-ng, which evaluates nothing.
"""

import json
import re
from dataclasses import dataclass
from enum import StrEnum

import lxml.etree
import lxml.html
from inscriptis import Inscriptis
from jsonpath_ng.ext import parse as jsonpath_parse


class Kind(StrEnum):
    TEXT = "text"  # the whole page's readable text
    CSS = "css"
    XPATH = "xpath"
    JSONPATH = "jsonpath"


class ExtractError(ValueError):
    """The expression is not valid, or the page cannot be read as what the expression needs."""


@dataclass(frozen=True)
class Extractor:
    kind: Kind
    expression: str = ""
    # Lines matching any of these regular expressions are left out before comparing.
    ignore: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ExtractError naming what is wrong with the expression or an ignore rule."""
        if self.kind != Kind.TEXT and not self.expression.strip():
            raise ExtractError(f"a {self.kind} extraction needs an expression")
        try:
            if self.kind == Kind.CSS:
                lxml.html.fromstring("<p></p>").cssselect(self.expression)
            elif self.kind == Kind.XPATH:
                lxml.etree.XPath(self.expression)
            elif self.kind == Kind.JSONPATH:
                jsonpath_parse(self.expression)
        except Exception as error:  # cssselect, lxml and jsonpath-ng each raise kinds of their own
            raise ExtractError(f"not a valid {self.kind} expression: {error}") from None
        for rule in self.ignore:
            try:
                re.compile(rule)
            except re.error as error:
                raise ExtractError(f"ignore rule {rule!r} is not a regular expression: {error}") from None

    def extract(self, body: bytes) -> str:
        """The normalised text this extractor watches in `body`."""
        self.check()
        if self.kind == Kind.JSONPATH:
            parts = _jsonpath(self.expression, body)
        else:
            root = _html(body)
            if self.kind == Kind.TEXT:
                parts = [_readable(root)]
            elif self.kind == Kind.CSS:
                parts = [_readable(element) for element in root.cssselect(self.expression)]
            else:
                parts = [_readable(match) if isinstance(match, lxml.etree._Element) else str(match)
                         for match in _xpath(root, self.expression)]
        return normalised("\n".join(parts), ignore=self.ignore)


# Never fetch a DTD, never expand an entity, never build a tree past libxml2's safe limits.
HTML_PARSER = lxml.html.HTMLParser(no_network=True, remove_comments=True, huge_tree=False)


def _html(body: bytes) -> lxml.html.HtmlElement:
    try:
        return lxml.html.fromstring(body or b"<html></html>", parser=HTML_PARSER)
    except (lxml.etree.ParserError, ValueError) as error:
        raise ExtractError(f"the page is not HTML that can be read: {error}") from None


def _readable(element) -> str:
    """Text as a person reads it: block elements on their own lines, scripts and styles left out."""
    return Inscriptis(element).get_text()


def _xpath(root, expression: str) -> list:
    try:
        found = root.xpath(expression)
    except lxml.etree.XPathError as error:
        raise ExtractError(f"the XPath expression failed on this page: {error}") from None
    return found if isinstance(found, list) else [found]


def _jsonpath(expression: str, body: bytes) -> list[str]:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ExtractError(f"the response is not JSON: {error}") from None
    return [value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
            for value in (match.value for match in jsonpath_parse(expression).find(document))]


def normalised(text: str, *, ignore: tuple[str, ...] = ()) -> str:
    """Whitespace folded in each line, blank lines and ignored lines left out: what is compared."""
    patterns = [re.compile(rule) for rule in ignore]
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line and not any(pattern.search(line) for pattern in patterns))
