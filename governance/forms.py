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
