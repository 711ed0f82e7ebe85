"""Short forms for a task's keyword arguments on the schedule's page: a URL and a method for the
HTTP call, a command and its arguments for the command job, instead of the kwargs JSON.

The app of a task contributes its short form (declarations: SCHEDULE_ARGUMENT_FORMS), so this
app imports none of them. Each short form is a fieldset of the one schedule form; filled in, it
writes the schedule's kwargs, and the change page fills it from the saved kwargs. The raw kwargs
box stays, for every other task and for what a short form cannot show.
"""

import copy
import json
import re
from typing import ClassVar

from django import forms
from django.forms.utils import pretty_name
from django.utils.html import format_html
from django.utils.module_loading import import_string

from shared.declarations import declared_in_apps

# The jobs' kwargs_problems start a problem with the key it concerns, quoted: "'url' ... is refused".
NAMED_KEY = re.compile(r"'(\w+)'")


class TaskArgumentsForm(forms.Form):
    """The fields of one task's kwargs, each named for the key it writes; a field left empty (or
    at its initial value, like the method GET) leaves its key out, so the task's default applies."""

    task: ClassVar[str] = ""
    title: ClassVar[str] = ""

    @classmethod
    def prefixed(cls, name: str) -> str:
        """The name of the field `name` in the schedule form, beside the other tasks' fields."""
        return f"{cls.task.replace('.', '_')}__{name}"

    @classmethod
    def given(cls, name: str, value) -> bool:
        return value not in forms.Field.empty_values and value != cls.base_fields[name].initial

    @classmethod
    def kwargs_from(cls, values: dict) -> dict:
        """The kwargs that the fields' cleaned values say."""
        return {name: value for name, value in values.items() if cls.given(name, value)}

    @classmethod
    def values_from(cls, kwargs: dict) -> dict | None:
        """The fields' values showing `kwargs`, or None when the fields cannot show them exactly
        (a key without a field, a value its field would clean into another)."""
        if not isinstance(kwargs, dict) or set(kwargs) - set(cls.base_fields):
            return None
        for name, value in kwargs.items():
            field = cls.base_fields[name]
            try:
                if field.clean(field.prepare_value(value)) != value:
                    return None
            except forms.ValidationError:
                return None
        return dict(kwargs)

    @classmethod
    def field_named_in(cls, problem: str) -> str | None:
        match = NAMED_KEY.match(problem)
        return match.group(1) if match and match.group(1) in cls.base_fields else None


def declared_argument_forms() -> list[type[TaskArgumentsForm]]:
    return [import_string(path) for path in declared_in_apps("SCHEDULE_ARGUMENT_FORMS")]


def with_argument_fields(form_class: type[forms.ModelForm]) -> type[forms.ModelForm]:
    """`form_class` with the declared short forms' fields added (declared fields, so the admin's
    fieldsets may name them)."""
    argument_forms = declared_argument_forms()
    fields = {}
    for arguments in argument_forms:
        for name, field in arguments.base_fields.items():
            field = copy.deepcopy(field)
            # Labelled by its own name ("Method"), not by the prefixed one it has in the schedule's
            # form ("Jobs http call method").
            field.label = field.label or pretty_name(name)
            # Read by the page's script (task_arguments.js) to show only the chosen task's fields.
            field.widget.attrs["data-for-task"] = arguments.task
            fields[arguments.prefixed(name)] = field
    return type(form_class.__name__, (form_class,), {**fields, "argument_forms": argument_forms})


def argument_fieldsets(argument_forms: list[type[TaskArgumentsForm]]) -> list:
    return [(arguments.title, {
        "fields": [arguments.prefixed(name) for name in arguments.base_fields],
        "classes": ["task-arguments"],
        "description": format_html(
            "For the task <strong>{}</strong>: filled in, these fields write its keyword arguments (the kwargs "
            "under Arguments). Leave them empty to write the JSON there yourself.", arguments.task),
    }) for arguments in argument_forms]


class TaskArgumentFields:
    """The schedule form's part that writes kwargs from the chosen task's short form."""

    argument_forms: ClassVar[list[type[TaskArgumentsForm]]] = []

    def fill_argument_fields(self) -> None:
        """On a saved schedule, its task's short form shows the saved kwargs (if it can)."""
        arguments = self._arguments_of(self.instance.task)
        if arguments is None or self.instance.pk is None:
            return
        try:
            values = arguments.values_from(json.loads(self.instance.kwargs or "{}"))
        except ValueError:
            values = None
        self.initial.update({arguments.prefixed(name): value for name, value in (values or {}).items()})

    def _arguments_of(self, task: str) -> type[TaskArgumentsForm] | None:
        return next((arguments for arguments in self.argument_forms if arguments.task == task), None)

    def argument_fields_refused(self, task: str) -> bool:
        arguments = self._arguments_of(task)
        return arguments is not None and any(arguments.prefixed(name) in self.errors for name in arguments.base_fields)

    def kwargs_from_argument_fields(self, data: dict, task: str) -> type[TaskArgumentsForm] | None:
        """Writes data["kwargs"] from the short form of `task` when it is filled; the short form's
        class when the kwargs are its own, so that their problems can be shown on its fields."""
        chosen = None
        for arguments in self.argument_forms:
            names = {arguments.prefixed(name): name for name in arguments.base_fields}
            if any(field in self.errors for field in names):
                continue
            values = {name: data.get(field) for field, name in names.items()}
            typed = [field for field, name in names.items()
                     if arguments.given(name, values[name]) and field in self.changed_data]
            if arguments.task == task and any(arguments.given(name, value) for name, value in values.items()):
                chosen = arguments, values
            elif typed:
                # Fields of another task shown from the saved kwargs, left as they were, are not "typed".
                self.add_error(typed[0], f"These fields are for the task {arguments.task}, and the task chosen is "
                                         f"{task or 'none yet'}: empty them, or choose {arguments.task}.")
        if chosen is None or "kwargs" in self.errors:
            return None
        return self._agree_with_raw_kwargs(data, *chosen)

    def _agree_with_raw_kwargs(self, data: dict, arguments: type[TaskArgumentsForm], values: dict):
        built = arguments.kwargs_from(values)
        raw = json.loads(data.get("kwargs") or "{}")
        if raw == {}:
            data["kwargs"] = json.dumps(built)
            return arguments
        shown = arguments.values_from(raw)
        said = arguments.kwargs_from(shown) if shown is not None else None
        if said == built:
            return arguments
        short_changed = any(arguments.prefixed(name) in self.changed_data for name in values)
        raw_changed = "kwargs" in self.changed_data
        # On a saved schedule both show the saved kwargs: the one edited says what is meant.
        if short_changed and not raw_changed:
            data["kwargs"] = json.dumps(built)
            return arguments
        if raw_changed and not short_changed:
            return None
        self.add_error("kwargs", self._disagreement(arguments, built, said))
        return None

    def _disagreement(self, arguments: type[TaskArgumentsForm], built: dict, said: dict | None) -> str:
        kwargs_label = self.fields["kwargs"].label
        if said is None:
            return (f"{kwargs_label} hold what the fields of {arguments.title} cannot show, and those fields are "
                    "filled too: keep one of them, and empty the other.")
        keys = sorted(key for key in {*built, *said} if built.get(key) != said.get(key))
        labels = ", ".join(str(self.fields[arguments.prefixed(key)].label) for key in keys)
        return (f"{kwargs_label} and the fields of {arguments.title} disagree on {labels}: keep one of them, "
                "and empty the other.")

    def add_argument_problems(self, arguments: type[TaskArgumentsForm], problems: list[str]) -> list[str]:
        """Shows each problem naming a key on that key's field; returns the others."""
        rest = []
        for problem in problems:
            name = arguments.field_named_in(problem)
            field = arguments.prefixed(name) if name else None
            if field is None or field in self.errors:
                rest.append(problem)
            else:
                self.add_error(field, problem[0].upper() + problem[1:] + ".")
        return rest
