"""The jobs' short forms on a schedule's page (declarations.SCHEDULE_ARGUMENT_FORMS): fields for
the kwargs that jobs.http_call and jobs.run_command read. The fields only parse what is typed;
whether the call or the command may run is the task's own kwargs_problems, asked at save, whose
answers are shown on the field of the key they name."""

import re

from django import forms
from django.conf import settings

from jobs.http_call import DEFAULT_TIMEOUT, METHODS, SECRET_PREFIX
from scheduler.admin_arguments import TaskArgumentsForm


class ParsedTextField(forms.CharField):
    """A text box holding a value of another type (a list, a dict), one item a line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def parse(self, text: str):
        raise NotImplementedError

    def render(self, value) -> str:
        raise NotImplementedError

    def to_python(self, value):
        return self.parse(super().to_python(value))

    def prepare_value(self, value):
        if value is None or isinstance(value, str):
            return value
        return self.render(value)

    def has_changed(self, initial, data) -> bool:
        try:
            return self.to_python(data) != (self.parse("") if initial is None else initial)
        except forms.ValidationError:
            return True


class HeaderLinesField(ParsedTextField):
    """`Name: value` a line, as a dict of header name to value."""

    def parse(self, text: str) -> dict:
        headers = {}
        for number, line in enumerate(text.splitlines(), start=1):
            name, colon, value = line.partition(":")
            if not line.strip():
                continue
            if not colon or not name.strip():
                raise forms.ValidationError(f"Line {number} ({line.strip()!r}) is not Name: value.")
            if name.strip().lower() in {given.lower() for given in headers}:
                raise forms.ValidationError(f"Line {number}: the header {name.strip()!r} is given twice.")
            headers[name.strip()] = value.strip()
        return headers

    def render(self, value: dict) -> str:
        return "\n".join(f"{name}: {text}" for name, text in value.items())


class StatusCodesField(ParsedTextField):
    """Status codes separated by commas or spaces ("200, 204"), as a list of numbers."""

    widget = forms.TextInput

    def parse(self, text: str) -> list[int]:
        codes = [code for code in re.split(r"[,\s]+", text) if code]
        wrong = [code for code in codes if not code.isdigit()]
        if wrong:
            raise forms.ValidationError(f"{wrong[0]!r} is not a status code: write codes like 200, 204.")
        return [int(code) for code in codes]

    def render(self, value: list) -> str:
        return ", ".join(map(str, value))


class ArgumentLinesField(ParsedTextField):
    """One command-line argument a line, as a list of strings."""

    def parse(self, text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip()]

    def render(self, value: list) -> str:
        return "\n".join(value)


class BodyField(forms.CharField):
    """A request body as typed: browsers send every line break of a text box as CR LF, which would
    turn a body saved with LF into another one each time its page is saved."""

    widget = forms.Textarea(attrs={"rows": 4})

    def __init__(self, **kwargs) -> None:
        super().__init__(strip=False, **kwargs)

    def to_python(self, value) -> str:
        return super().to_python(value).replace("\r\n", "\n")


class HttpCallFields(TaskArgumentsForm):
    task = "jobs.http_call"
    title = "HTTP call"

    url = forms.CharField(label="URL", required=False, help_text="The address to call, http:// or https://.")
    method = forms.ChoiceField(choices=[(method, method) for method in METHODS], initial="GET", required=False)
    expected_status = StatusCodesField(label="Expected status codes", required=False,
                                       help_text="Separated by commas, e.g. 200, 204. Empty: any 2xx.")
    timeout = forms.IntegerField(label="Timeout (seconds)", required=False,
                                 help_text=f"For the whole call. Empty: {DEFAULT_TIMEOUT}.")
    allowed_port = forms.IntegerField(label="Allowed port", required=False,
                                      help_text="Besides 80 and 443, the one port the URL's own host may be called "
                                                "on. Empty: none.")
    body = BodyField(required=False)
    headers = HeaderLinesField(required=False, help_text="One a line: Name: value, e.g. Content-Type: "
                                                         "application/json.")
    secret_headers = HeaderLinesField(
        label="Secret headers", required=False,
        help_text=f"One a line: Name: {SECRET_PREFIX}NAME, e.g. Authorization: {SECRET_PREFIX}OPS_TOKEN. The worker "
                  "reads the value from that environment variable when it calls; it is never stored in the "
                  "schedule.")


def _command_choices() -> list[tuple[str, str]]:
    return [("", "---------"), *((name, name) for name in settings.JOB_COMMANDS)]


class RunCommandFields(TaskArgumentsForm):
    task = "jobs.run_command"
    title = "Management command"

    command = forms.ChoiceField(choices=_command_choices, required=False,
                                help_text="One of JOB_COMMANDS, run as manage.py <command> in the worker.")
    arguments = ArgumentLinesField(
        required=False,
        help_text="One argument a line, as typed after manage.py <command> (a value with spaces stays one "
                  "argument; blank lines are skipped), e.g. sessions, then --dry-run on the next line.")
