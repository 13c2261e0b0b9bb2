"""Forms of the risk pages."""

from __future__ import annotations

from django import forms

from governance.conditional_access.choices import RiskLevel
from portal.forms import StyledForm

LEVELS = [(RiskLevel.HIGH, "High"), (RiskLevel.MEDIUM, "Medium"), (RiskLevel.LOW, "Low")]

class RemediationForm(StyledForm):
    enabled = forms.TypedChoiceField(label="Automatic remediation", coerce=lambda v: v == "on",
                                     choices=[("off", "Off"), ("on", "On: disable the agent and revoke its tokens")])
    min_level = forms.ChoiceField(label="At or above", choices=LEVELS)

class CompromisedForm(StyledForm):
    reason = forms.CharField(label="Why", max_length=300,
                             error_messages={"required": "Say why the agent is compromised.",
                                             "max_length": "Keep the reason to 300 characters."})
