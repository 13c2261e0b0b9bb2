"""Governance forms: parse input only; the rules live in ``access_packages`` and ``approvals``."""

from __future__ import annotations

from django import forms

from agents.choices import PublisherKind
from governance.choices import ApproverKind, DurationKind, PolicyGrant, PolicyState, Requestors, RiskLevel
from governance.models import AccessPackage
from portal.forms import StyledForm, UsernameField
from portal.models import Permission


class UsernameListField(forms.CharField):
    def clean(self, value):
        raw = super().clean(value) or ""
        single = UsernameField()
        return [single.clean(n.strip()) for n in dict.fromkeys(raw.replace(";", ",").split(",")) if n.strip()]


class PackageForm(StyledForm):
    name = forms.CharField(max_length=150)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    permissions = forms.ModelMultipleChoiceField(
        queryset=Permission.objects.none(), widget=forms.SelectMultiple(attrs={"size": 10}),
        help_text="Privileged permissions are never offered: they can never reach an agent.")
    incompatible_with = forms.ModelMultipleChoiceField(queryset=AccessPackage.objects.none(), required=False,
                                                       label="Incompatible packages")
    requestors = forms.ChoiceField(choices=Requestors.choices, label="Who may request")
    approver_kind = forms.ChoiceField(choices=ApproverKind.choices, label="First approval")
    approvers = UsernameListField(required=False, label="Named approvers (first stage)")
    second_approver_kind = forms.ChoiceField(choices=ApproverKind.choices, label="Second approval")
    second_approvers = UsernameListField(required=False, label="Named approvers (second stage)")
    duration_kind = forms.ChoiceField(choices=DurationKind.choices, label="Duration")
    duration_value = forms.IntegerField(min_value=1, required=False, label="Days or hours")
    fixed_end = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    max_hours = forms.IntegerField(min_value=1, initial=24 * 90, label="Maximum in hours, extensions included")
    allow_extension = forms.BooleanField(required=False, initial=True)
    extension_needs_approval = forms.BooleanField(required=False, initial=True)
    justification_required = forms.BooleanField(required=False, initial=True)
    request_ttl_days = forms.IntegerField(min_value=1, initial=7, label="Undecided requests expire after (days)")

    def __init__(self, *args, workspace=None, package=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["permissions"].queryset = Permission.objects.filter(kind="application", privileged=False) \
            .order_by("product", "name")
        others = AccessPackage.objects.filter(workspace=workspace)
        if package is not None:
            others = others.exclude(pk=package.pk)
        self.fields["incompatible_with"].queryset = others
        for name in ("allow_extension", "extension_needs_approval", "justification_required"):
            self.fields[name].widget.attrs["class"] = "form-check-input"

    def split(self) -> dict:
        data = dict(self.cleaned_data)
        policy_keys = ("requestors", "approver_kind", "second_approver_kind", "duration_kind", "duration_value",
                       "fixed_end", "max_hours", "allow_extension", "extension_needs_approval",
                       "justification_required", "request_ttl_days")
        policy = {key: data.pop(key) for key in policy_keys}
        if policy["duration_value"] is None:
            policy["duration_value"] = 0
        return {**data, "policy": policy}


class AssignmentRequestForm(StyledForm):
    agent = forms.IntegerField(widget=forms.HiddenInput, required=False)
    agent_name = forms.CharField(label="Agent", help_text="The agent's name in this workspace.")
    hours = forms.IntegerField(min_value=1, required=False, label="For how many hours (optional)",
                               help_text="At most the policy's duration; empty takes the policy's duration.")
    justification = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ExtendForm(StyledForm):
    hours = forms.IntegerField(min_value=1, label="Extend by (hours)")


class PolicyForm(StyledForm):
    """Conditional-access policy; the list fields take one entry per line."""

    name = forms.CharField(max_length=150)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    state = forms.ChoiceField(choices=PolicyState.choices, initial=PolicyState.REPORT_ONLY,
                              help_text="Start in report-only to see what it would do.")
    grant = forms.ChoiceField(choices=PolicyGrant.choices)
    all_agents = forms.BooleanField(required=False, label="Target every agent")
    agent_kinds = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                            choices=[("assistive", "Assistive"), ("autonomous", "Autonomous"),
                                                     ("agent_user", "Agents with an agent user")])
    publisher_kinds = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                                choices=PublisherKind.choices)
    agents = forms.CharField(required=False, label="Named agents", help_text="Agent names, comma-separated.")
    excluded_agents = forms.CharField(required=False, label="Excluded agents",
                                      help_text="Agent names, comma-separated.")
    attribute_rules = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                      help_text="One per line: key equals|in|starts_with value (in: comma-separated).")
    min_risk_level = forms.ChoiceField(required=False, label="When the agent's risk is at least",
                                       choices=[("", "Any risk"), *RiskLevel.choices])
    ip_ranges = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Client IP ranges",
                                help_text="One CIDR per line, e.g. 10.0.0.0/8.")
    time_windows = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                   label="Time windows (UTC)", help_text="One per line: days HH:MM-HH:MM, e.g. "
                                                                         "0,1,2,3,4 08:00-18:00 (Monday = 0).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("agent_kinds", "publisher_kinds"):
            self.fields[name].widget.attrs.pop("class", None)
        self.fields["all_agents"].widget.attrs["class"] = "form-check-input"

    @staticmethod
    def _lines(value: str) -> list[str]:
        return [line.strip() for line in (value or "").splitlines() if line.strip()]

    def clean_attribute_rules(self):
        rules = []
        for line in self._lines(self.cleaned_data["attribute_rules"]):
            parts = line.split(None, 2)
            if len(parts) != 3:
                raise forms.ValidationError(f"“{line}”: write key op value.")
            key, op, value = parts
            rules.append({"key": key, "op": op, "value": [v.strip() for v in value.split(",")] if op == "in"
                          else value})
        return rules

    def clean_ip_ranges(self):
        return self._lines(self.cleaned_data["ip_ranges"])

    def clean_time_windows(self):
        windows = []
        for line in self._lines(self.cleaned_data["time_windows"]):
            try:
                days, hours = line.split()
                start, end = hours.split("-")
                windows.append({"days": [int(d) for d in days.split(",")], "start": start, "end": end})
            except ValueError as error:
                raise forms.ValidationError(f"“{line}”: write days HH:MM-HH:MM.") from error
        return windows


class WhatIfForm(StyledForm):
    agent = forms.CharField(label="Agent name")
    ip = forms.GenericIPAddressField(required=False, label="Client IP address")
    at = forms.DateTimeField(required=False, label="Time (UTC)",
                             widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    scopes = forms.CharField(required=False, label="Scopes requested",
                             help_text="Space-separated permission names; empty means all the agent holds.")



# --- sessions and runs (issue 8) -------------------------------------------------------------------------------------


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
    """One text field per input the agent's blueprint declares (``Blueprint.inputs``), its default prefilled.

    Required inputs are marked, not enforced here: ``runs.run_start`` enforces them (one rule, one place), and its
    refusal is shown on this form."""

    def __init__(self, *args, declared=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.required_names: list[str] = []
        for item in declared or ():
            name = str(item.get("Name") or "").strip()
            if not name or name in self.fields:
                continue
            help_text = str(item.get("Description") or "").strip()
            self.fields[name] = forms.CharField(label=name, required=False, max_length=2000, help_text=help_text,
                                                initial=str(item.get("DefaultValue") or ""))
            attrs = self.fields[name].widget.attrs
            attrs["class"] = "form-control"
            if help_text:
                attrs["aria-describedby"] = f"{self[name].id_for_label}_help"
            if item.get("Required"):
                self.required_names.append(name)
                attrs["aria-required"] = "true"

    def inputs(self) -> dict:
        return dict(self.cleaned_data)


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
