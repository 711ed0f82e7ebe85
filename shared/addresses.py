"""Lists of e-mail addresses as people type them: one per line, or separated by commas or
semicolons. One parser for every such field (a report's recipients, a schedule's alerts)."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

SEPARATORS = re.compile(r"[\s,;]+")


def email_list(text: str) -> list[str]:
    """The addresses in `text`, lower case, in order, without repeats."""
    return list(dict.fromkeys(address.lower() for address in SEPARATORS.split(text or "") if address))


def validate_email_list(value: str) -> None:
    for address in email_list(value):
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not a valid email address.") from None
