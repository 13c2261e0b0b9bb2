"""Search-as-you-type pickers for people (this module) and agents (``agents/pickers.py``): an endpoint answers the
options that match what was typed, among those the asker may see, as ``<option>`` elements for a ``<datalist>``
that htmx fills (``templates/portal/partials/picker_input.html``). Without JavaScript the field is a plain text
input, and the form that receives it checks the name like any other input."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal import rbac
from portal.choices import UserKind
from portal.models import User, WorkspaceMembership

LIMIT = 20


def typed(request) -> str:
    """What was typed: ``q``, or the value of the field named by ``field`` (htmx sends the input under its name)."""
    term = request.GET.get("q") or request.GET.get(request.GET.get("field") or "q") or ""
    return term.strip()[:100]


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
