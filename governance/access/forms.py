"""Forms of the access package pages."""

from __future__ import annotations

from django import forms

from governance.access.choices import ApproverKind, DurationKind, Requestors
from governance.access.models import AccessPackage
from portal.forms import StyledForm, UsernameListField
from portal.models import Permission
from portal.pickers import PickerInput


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
        others = AccessPackage.objects.filter(workspace=workspace, removed_at__isnull=True)
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
    agent_name = forms.CharField(label="Agent", widget=PickerInput("picker-agents"),
                                 help_text="The agent's name in this workspace.")
    hours = forms.IntegerField(min_value=1, required=False, label="For how many hours (optional)",
                               help_text="At most the policy's duration; empty takes the policy's duration.")
    justification = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ExtendForm(StyledForm):
    hours = forms.IntegerField(min_value=1, label="Extend by (hours)")


class PackageRemoveForm(StyledForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000,
                             label="Why is it removed?",
                             help_text="Kept with the package and in the audit log.")
