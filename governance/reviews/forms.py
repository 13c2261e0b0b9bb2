"""Forms of the access review pages."""

from __future__ import annotations

from django import forms

from governance.access.models import AccessPackage
from governance.reviews.choices import (
    ReviewerKind,
    ReviewNoResponse,
    ReviewRecurrence,
    ReviewScope,
)
from portal.forms import StyledForm, UsernameField, UsernameListField
from portal.pickers import PickerInput


class ReviewForm(StyledForm):
    """A new campaign; the rules (owners only, periods that never overlap, …) live in ``reviews.review_create``."""

    name = forms.CharField(max_length=150)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    scope_kind = forms.ChoiceField(choices=ReviewScope.choices, label="What is reviewed")
    packages = forms.ModelMultipleChoiceField(
        queryset=AccessPackage.objects.none(), required=False, label="Access packages (for a package review)",
        error_messages={"invalid_choice": "Choose the access packages from the list: a removed package, or one of "
                                          "another workspace, cannot be reviewed."})
    reviewer_kind = forms.ChoiceField(choices=ReviewerKind.choices, label="Reviewers")
    named_reviewers = UsernameListField(required=False, label="Named reviewers",
                                        help_text="Type part of a name and choose; separate several with a semicolon.")
    fallback_reviewer = UsernameField(required=False, label="Fallback reviewer", widget=PickerInput(),
                                      help_text="Reviews the items nobody else may review.")
    recurrence = forms.ChoiceField(choices=ReviewRecurrence.choices)
    starts_at = forms.DateTimeField(label="Starts", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    duration_days = forms.IntegerField(min_value=1, initial=14, label="Duration in days")
    auto_apply = forms.BooleanField(required=False, initial=True, label="Apply the results automatically at the end")
    no_response = forms.ChoiceField(choices=ReviewNoResponse.choices, label="When a reviewer does not answer",
                                    initial=ReviewNoResponse.RECOMMENDATION)

    def __init__(self, *args, workspace=None, **kwargs):
        super().__init__(*args, **kwargs)
        # A removed package is kept for its history only (docs/design.md, R29): it is not offered for a new review.
        self.fields["packages"].queryset = AccessPackage.objects.filter(
            workspace=workspace, removed_at__isnull=True).order_by("name")
        self.fields["auto_apply"].widget.attrs["class"] = "form-check-input"
