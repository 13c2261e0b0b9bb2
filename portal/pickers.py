"""Search-as-you-type pickers for people (this module) and agents (``agents/pickers.py``): an endpoint answers the
options that match what was typed, among those the asker may see, as ``<option>`` elements for a ``<datalist>``
that htmx fills (``templates/portal/partials/picker_input.html``). Without JavaScript the field is a plain text
input, and the form that receives it checks the name like any other input."""

from __future__ import annotations

import json
import re

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET

from portal import rbac
from portal.choices import UserKind
from portal.models import User, WorkspaceMembership

LIMIT = 20


def typed(request) -> str:
    """What was typed: ``q``, or the value of the field named by ``field`` (htmx sends the input under its name); in a
    field of several names, the last one (the one being typed)."""
    term = request.GET.get("q") or request.GET.get(request.GET.get("field") or "q") or ""
    return re.split(r"[;,]", term)[-1].strip()[:100]


def people_visible_to(user) -> QuerySet[User]:
    """Active people (not agent users) the user may pick: everyone for directory managers and inherited owners,
    else the members of the workspaces the user sees."""
    people = User.objects.filter(is_active=True, kind=UserKind.HUMAN)
    if rbac.can_manage_directory(user) or rbac.is_inherited_owner(user):
        return people
    members = WorkspaceMembership.objects.filter(workspace__in=rbac.workspaces_visible_to(user).values("pk"))
    return people.filter(Q(pk__in=members.values("user_id")) | Q(pk=user.pk))


def people_options(user, term: str, limit: int = LIMIT) -> list[tuple[str, str]]:
    """``(username, "Display name (username)")`` of the people matching ``term``, usernames starting with it first."""
    if not term:
        return []
    found = (people_visible_to(user).filter(Q(username__icontains=term) | Q(display_name__icontains=term))
             .order_by("username")[:limit * 2])
    ranked = sorted(found, key=lambda u: (not u.username.lower().startswith(term.lower()), u.username))[:limit]
    return [(u.username, f"{u.label} ({u.username})" if u.label != u.username else u.username) for u in ranked]


@login_required
@require_GET
def people(request):
    return render(request, "portal/partials/picker_options.html",
                  {"options": people_options(request.user, typed(request))})


#: How a field names several people or agents, wherever they are typed or uploaded: ``; `` (a comma is read the same).
SEPARATOR = "; "


class PickerInput(forms.TextInput):
    """A form field's search-as-you-type picker: a text input whose suggestions htmx fetches from ``url_name`` (the
    people or agents endpoint) into a ``<datalist>``; ``static/portal/portal.js`` turns it into a combobox that the
    arrow keys and Enter drive. ``multiple`` fields take several names separated by ``SEPARATOR``: the suggestion
    replaces only the name being typed. Without JavaScript it is the plain text input the form checks."""

    def __init__(self, url_name: str = "picker-people", *, multiple: bool = False, attrs=None):
        super().__init__(attrs)
        self.url_name, self.multiple = url_name, multiple

    def render(self, name, value, attrs=None, renderer=None):
        attrs = {**(attrs or {})}
        field_id = attrs.get("id") or f"id_{name}"
        attrs.update({
            "id": field_id, "list": f"{field_id}-options", "autocomplete": "off", "hx-get": reverse(self.url_name),
            "hx-trigger": "input changed delay:200ms", "hx-target": f"#{field_id}-options", "hx-swap": "innerHTML",
            "hx-vals": json.dumps({"field": name}),
            "data-picker": "agents" if self.url_name == "picker-agents" else "people",
        })
        if self.multiple:
            attrs["data-multiple"] = SEPARATOR
        html = super().render(name, value, attrs, renderer)
        return format_html('{}<datalist id="{}-options"></datalist>', html, field_id)
