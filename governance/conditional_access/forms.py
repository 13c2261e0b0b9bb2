"""Forms of the conditional-access pages."""

from __future__ import annotations

from django import forms

from agents.choices import CredentialType, PublisherKind
from governance.conditional_access.choices import PolicyGrant, PolicyState, RiskLevel
from portal.forms import StyledForm
from portal.pickers import PickerInput


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
    agents = forms.CharField(required=False, label="Named agents", widget=PickerInput("picker-agents", multiple=True),
                             help_text="Type part of a name and choose; separate several with a semicolon.")
    excluded_agents = forms.CharField(required=False, label="Excluded agents",
                                      widget=PickerInput("picker-agents", multiple=True),
                                      help_text="Type part of a name and choose; separate several with a semicolon.")
    attribute_rules = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                      help_text="One per line: key equals|in|starts_with value (in: comma-separated). "
                                                "A key named here becomes protected: only Global and Attribute "
                                                "Assignment Administrators change it on an agent.")
    min_risk_level = forms.ChoiceField(required=False, label="When the agent's risk is at least",
                                       choices=[("", "Any risk"), *RiskLevel.choices])
    ip_ranges = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Client IP ranges",
                                help_text="One CIDR per line, e.g. 10.0.0.0/8.")
    time_windows = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                   label="Time windows (UTC)", help_text="One per line: days HH:MM-HH:MM, e.g. "
                                                                         "0,1,2,3,4 08:00-18:00 (Monday = 0).")
    resources = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                label="When the resource is one of",
                                help_text="Resource identifiers (token audiences), one per line; the portal API is "
                                          "the portal's base URL. Empty: any resource.")
    credential_types = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, choices=CredentialType.choices,
        label="When the client authenticated with",
        help_text="None ticked: any credential. A run start authenticates no client, so it matches no type.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("agent_kinds", "publisher_kinds", "credential_types"):
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

    def clean_resources(self):
        return list(dict.fromkeys(self._lines(self.cleaned_data["resources"])))

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
    agent = forms.CharField(label="Agent name", widget=PickerInput("picker-agents"))
    ip = forms.GenericIPAddressField(required=False, label="Client IP address")
    at = forms.DateTimeField(required=False, label="Time (UTC)",
                             widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    scopes = forms.CharField(required=False, label="Scopes requested",
                             help_text="Space-separated permission names; empty means all the agent holds.")
    resource = forms.CharField(required=False, max_length=300, label="Resource",
                               help_text="The resource identifier asked for; empty means the portal API.")
    credential_type = forms.ChoiceField(required=False, label="Authenticated with",
                                        choices=[("", "No client credential (a run start)"),
                                                 *CredentialType.choices])
