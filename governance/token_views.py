"""Token pages: a person's own token to delegate to an agent (R13), and the resource servers that introspect."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from governance import tokens
from governance.models import ResourceServer
from portal import rbac
from portal.forms import StyledForm
from portal.viewutils import act


class PersonalTokenForm(StyledForm):
    scopes = forms.CharField(required=False, label="Scopes (optional)",
                             help_text="Space-separated; empty means all your data rights.")


class ResourceServerForm(StyledForm):
    name = forms.CharField(max_length=150, label="Name", help_text="The service that will validate agents' tokens.")


@login_required
@require_http_methods(["GET", "POST"])
@sensitive_variables("value")
def personal_token(request):
    """Issue yourself a short-lived token (shown once) that an agent may exchange to act for you."""
    form = PersonalTokenForm(request.POST or None)
    issued = value = None
    if request.method == "POST" and form.is_valid():
        try:
            issued, value = tokens.personal_token_issue(actor=request.user,
                                                        scopes=form.cleaned_data["scopes"].split() or None)
        except ValidationError as error:
            form.add_error(None, error)
    response = render(request, "governance/personal_token.html", {
        "form": form, "issued": issued, "value": value, "rights": sorted(tokens.user_rights(request.user)),
        "active": "tokens", "can_manage_servers": tokens.can_manage_resource_servers(request.user)})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
@sensitive_variables("secret")
def resource_server_list(request):
    rbac.require(tokens.can_manage_resource_servers(request.user),
                 "Only Global and Security Administrators manage resource servers.")
    form = ResourceServerForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = tokens.resource_server_create(actor=request.user, name=form.cleaned_data["name"])
            form = ResourceServerForm()
        except ValidationError as error:
            form.add_error(None, error)
    response = render(request, "governance/resource_servers.html", {
        "form": form, "servers": ResourceServer.objects.select_related("created_by"), "created": created,
        "secret": secret, "active": "tokens"})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def resource_server_revoke(request, server_id: int):
    rbac.require(tokens.can_manage_resource_servers(request.user),
                 "Only Global and Security Administrators manage resource servers.")
    server = get_object_or_404(ResourceServer, pk=server_id)
    act(request, tokens.resource_server_revoke, lambda s: f"{s.name} can no longer introspect tokens.",
        server=server)
    return redirect("resource-server-list")



