"""Forms of the sign-in pages: personal tokens, resource servers, the sign-in log's filters and risk."""

from __future__ import annotations

from django import forms

from agents.choices import CredentialType
from governance.signin.choices import ActorKind, SignInOutcome
from portal.forms import StyledForm
from portal.pickers import PickerInput


class PersonalTokenForm(StyledForm):
    scopes = forms.CharField(required=False, label="Scopes (optional)",
                             help_text="Space-separated; empty means all your data rights.")


class ResourceServerForm(StyledForm):
    name = forms.CharField(max_length=150, label="Name", help_text="The service that will validate agents' tokens.")
    identifier = forms.CharField(required=False, max_length=300, label="Identifier (optional)",
                                 help_text="An absolute https URI: the audience of tokens issued for it (RFC 8707). "
                                           "Empty: it only introspects.")
    scopes = forms.CharField(required=False, max_length=2000, label="Scopes (optional)",
                             help_text="Space-separated scopes it accepts; each joins the permission catalog.")


class AgentResourceForm(StyledForm):
    identifier = forms.CharField(max_length=300, label="Identifier",
                                 help_text="An absolute https URI other agents name as the resource.")
    scopes = forms.CharField(max_length=2000, label="Scopes",
                             help_text="Space-separated scopes this agent accepts; each joins the permission "
                                       "catalog, so other agents hold them through access packages.")


class SignInFilterForm(StyledForm):
    """The log's filters. The date fields are ``from`` and ``to`` in the query string (see ``add_prefix``)."""

    agent = forms.CharField(required=False, max_length=150, label="Agent", help_text="Name or client id.",
                            widget=PickerInput("picker-agents"))
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *SignInOutcome.choices],
                                label="Outcome")
    actor_kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *ActorKind.choices],
                                   label="Actor kind")
    credential_type = forms.ChoiceField(required=False, choices=[("", "Any credential"), *CredentialType.choices],
                                        label="Credential")
    ip = forms.GenericIPAddressField(required=False, label="IP address")
    scope = forms.CharField(required=False, max_length=200, label="Scope", help_text="Requested or granted.")
    period = forms.ChoiceField(required=False, label="Time", initial="24h",
                               choices=[("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days"),
                                        ("all", "Everything kept")],
                               help_text="Ignored when From or To is set.")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

    QUERY_NAMES = {"since": "from", "until": "to"}

    def add_prefix(self, field_name: str) -> str:
        return self.QUERY_NAMES.get(field_name, field_name)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("'From' must be on or before 'To'.")
        return data


