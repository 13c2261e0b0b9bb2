"""The sign-in log pages (R20, R22): every token request with its outcome and the policies that applied, and its
CSV/JSON export. Sign-in readers see every row, workspace owners their workspaces' agents' rows; others get 403."""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from governance import signins
from governance.choices import ActorKind, SignInOutcome
from portal import rbac
from portal.forms import StyledForm
from portal.viewutils import page, streamed_export

FORBIDDEN = "The sign-in log is open to workspace owners and security readers."


class SignInFilterForm(StyledForm):
    """The log's filters. The date fields are ``from`` and ``to`` in the query string (see ``add_prefix``)."""

    agent = forms.CharField(required=False, max_length=150, label="Agent", help_text="Name or client id.")
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *SignInOutcome.choices],
                                label="Outcome")
    actor_kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *ActorKind.choices],
                                   label="Actor kind")
    ip = forms.GenericIPAddressField(required=False, label="IP address")
    scope = forms.CharField(required=False, max_length=200, label="Scope", help_text="Requested or granted.")
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


def _signin_queryset(request):
    """The sign-ins this user may see, narrowed by the filters; invalid filters match nothing."""
    rbac.require(signins.can_view_signins(request.user), FORBIDDEN)
    rows = signins.signins_visible_to(request.user)
    form = SignInFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        rows = signins.signins_filtered(rows, form.cleaned_data)
    elif form.is_bound:
        rows = rows.none()
    return form, rows


@login_required
@require_GET
def signin_list(request):
    form, rows = _signin_queryset(request)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    signin_page = page(request, signins.signins_for_page(rows))
    linkable = signins.visible_agent_ids(request.user, (row.agent_id for row in signin_page))
    return render(request, "governance/signins.html", {
        "form": form, "page": signin_page, "query": query.urlencode(), "linkable": linkable,
    })


@login_required
@require_GET
def signin_export(request):
    """Stream the filtered log as CSV or JSON; memory stays flat whatever the row count."""
    _form, rows = _signin_queryset(request)
    return streamed_export(request, signins.export_rows(rows), signins.EXPORT_COLUMNS, "sign-ins",
                           csv_cell=_csv_cell)


def _csv_cell(column: str, value):
    if column in ("requested_scopes", "granted_scopes"):
        return " ".join(value)
    if column == "policies":
        return json.dumps(value, separators=(",", ":"))
    return value
