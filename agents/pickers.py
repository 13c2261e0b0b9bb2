"""The agent picker's endpoint (see ``portal/pickers.py``): agents the asker may see whose name matches."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents import policy
from portal.pickers import LIMIT, typed


def agent_options(user, term: str, limit: int = LIMIT) -> list[tuple[str, str]]:
    if not term:
        return []
    rows = (policy.agents_visible_to(user).filter(name__icontains=term).select_related("workspace")
            .order_by("name", "pk")[:limit])
    return [(agent.name, f"{agent.name} ({agent.workspace.name}, {agent.get_status_display().lower()})")
            for agent in rows]


@login_required
@require_GET
def agents(request):
    return render(request, "portal/partials/picker_options.html",
                  {"options": agent_options(request.user, typed(request))})
