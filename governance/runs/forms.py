"""Forms of the session and run pages."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from agents.inputs import declared_inputs
from portal.forms import StyledForm


class SessionOpenForm(StyledForm):
    """Choose an agent the person may use (the view offers only those) and an optional title."""

    agent = forms.TypedChoiceField(coerce=int, label="Agent", empty_value=None,
                                   error_messages={"required": "Choose the agent to work with.",
                                                   "invalid_choice": "Choose one of the agents offered."})
    title = forms.CharField(required=False, max_length=200, label="Title (optional)",
                            help_text="What you are working on, so you can find the session again.")

    def __init__(self, *args, agents=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "Choose an agent…")] + [
            (agent.pk, f"{agent.name} — {agent.blueprint.display_name} ({agent.workspace.name})") for agent in agents]


class RunInputsForm(forms.Form):
    """One text field per input the agent's blueprint declares (``agents.inputs``), labelled in words, its default
    prefilled.

    Required inputs, types and limits are marked, not enforced here: ``runs.run_start`` enforces them (one rule, one
    place), and its refusal is shown next to each field (``add_start_errors``)."""

    def __init__(self, *args, declared=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.required_names: list[str] = []
        for item in declared_inputs(declared):
            help_text = item.description
            expected = item.expected()
            if item.type != "string" and expected not in help_text:
                help_text = f"{help_text} ({expected[:1].upper()}{expected[1:]}.)".strip()
            self.fields[item.name] = forms.CharField(label=item.label, required=False, max_length=2000,
                                                     help_text=help_text, initial=item.default)
            attrs = self.fields[item.name].widget.attrs
            attrs["class"] = "form-control"
            if item.type in ("integer", "number"):
                attrs["inputmode"] = "numeric" if item.type == "integer" else "decimal"
            if help_text:
                attrs["aria-describedby"] = f"{self[item.name].id_for_label}_help"
            if item.required:
                self.required_names.append(item.name)
                attrs["aria-required"] = "true"

    def inputs(self) -> dict:
        return dict(self.cleaned_data)

    def add_start_errors(self, error: ValidationError) -> None:
        """A refused start: each input's problem next to its field, the rest above the form."""
        if hasattr(error, "error_dict"):
            for name, errors in error.message_dict.items():
                for message in errors:
                    self.add_error(name if name in self.fields else None, message)
        else:
            for message in error.messages:
                self.add_error(None, message)


class FeedbackForm(StyledForm):
    """A rating of a run's output from 1 to 5, with an optional comment (``runs.feedback_give``)."""

    rating = forms.TypedChoiceField(coerce=int, widget=forms.RadioSelect, label="Rating",
                                    choices=[(i, str(i)) for i in range(1, 6)],
                                    error_messages={"required": "Choose a rating from 1 to 5.",
                                                    "invalid_choice": "Choose a rating from 1 to 5."})
    comment = forms.CharField(required=False, max_length=2000, label="Comment (optional)",
                              widget=forms.Textarea(attrs={"rows": 2}),
                              help_text="What was useful or wrong: it is kept as the agent's memory.",
                              error_messages={"max_length": "Keep the comment under 2,000 characters."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rating"].widget.attrs["class"] = "form-check-input"

PERIOD_UNITS = [(60, "minutes"), (3600, "hours"), (86400, "days")]


class ScheduleForm(StyledForm):
    """Pause or resume an agent's schedule (``paused``), or set its period as a number of units (0: on demand)."""

    paused = forms.TypedChoiceField(required=False, coerce=lambda v: v == "1", empty_value=None,
                                    choices=[("1", "Pause"), ("0", "Resume")])
    every = forms.IntegerField(required=False, min_value=0, label="Every",
                               error_messages={"min_value": "The period is 0 (on demand only) or more."})
    unit = forms.TypedChoiceField(required=False, coerce=int, choices=PERIOD_UNITS, initial=3600, label="Unit")

    def clean(self):
        data = super().clean()
        if data.get("paused") is None and data.get("every") is None and not self.errors:
            raise forms.ValidationError("Pause, resume or give a period.")
        return data

    def changes(self) -> dict:
        """The ``schedule_update`` arguments this form asks for."""
        data, changes = self.cleaned_data, {}
        if data.get("paused") is not None:
            changes["paused"] = data["paused"]
        if data.get("every") is not None:
            changes["period_seconds"] = data["every"] * (data.get("unit") or 3600)
        return changes


class SponsorChoiceForm(StyledForm):
    """The person who will sponsor an agent, when a hygiene finding's ``add_sponsor`` is applied. ``people`` is a
    list of active people, read once for the whole page (one select per finding costs no query)."""

    user = forms.TypedChoiceField(coerce=int, label="New sponsor", empty_value=None,
                                  error_messages={"required": "Choose the person who will sponsor the agent.",
                                                  "invalid_choice": "Choose one of the people offered."})

    def __init__(self, *args, people=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.people = {person.pk: person for person in people}
        self.fields["user"].choices = [("", "Choose a person…")] + [
            (person.pk, f"{person.label} ({person.username})") for person in people]

    def clean_user(self):
        return self.people[self.cleaned_data["user"]]
