"""The agents list's bulk actions, CSV export and bulk-upload template (docs/design.md, "Bulk actions")."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from agents import bulk, bulk_actions, policy, registry, selectors
from portal import change_views
from portal.csvexport import csv_text
from portal.models import User
from portal.viewutils import flash_errors, streamed_export

FILTERS = ("q", "status", "identity_type", "scope", "publisher_kind", "sponsor", "owner", "attribute", "expiring",
           "sort")
EXPORT_COLUMNS = ("name", "blueprint", "version", "status", "identity_type", "scope", "sponsors", "owners",
                  "expires_at", "last_used_at", "created_at")
TEMPLATE_EXAMPLE = ("AgentHygieneAgent", "hygiene-eu", "agent_identity", "workspace", "owner;owner2", "owner",
                    "tier=1;region=eu", "2027-06-30T00:00:00+00:00")


def list_filters(data, prefix: str = "") -> dict[str, str]:
    """The list's filters from its query string, or from a bulk form's ``back.<name>`` fields (``prefix="back."``:
    the bulk form's own ``sponsor`` is the person to add, not the list's sponsor filter)."""
    return {key: (data.get(f"{prefix}{key}") or "").strip() for key in FILTERS}


def _list_url(filters: dict[str, str]) -> str:
    query = urlencode({key: value for key, value in filters.items() if value})
    return reverse("agent-list") + (f"?{query}" if query else "")


def _selection(request, data):
    """The selected agents (all visible to the user, else 404), the action and the sponsor, or errors in words."""
    try:
        ids = sorted({int(value) for value in data.getlist("agent")})
    except ValueError as error:
        raise Http404("No such agent.") from error
    errors = []
    action = data.get("action", "")
    if action not in bulk_actions.ACTIONS:
        errors.append("Choose what to do with the selected agents.")
    if not ids:
        errors.append("Select at least one agent.")
    if len(ids) > bulk_actions.MAX_AGENTS:
        errors.append(f"Select at most {bulk_actions.MAX_AGENTS} agents at a time.")
    agents = list(policy.agents_visible_to(request.user).filter(pk__in=ids).select_related("workspace", "blueprint")
                  .order_by("name", "pk")) if ids and not errors else []
    if ids and not errors and len(agents) != len(ids):
        raise Http404("No such agent.")
    sponsor = None
    if action == "add_sponsor":
        username = (data.get("sponsor") or "").strip()
        sponsor = User.objects.filter(username=username).first() if username else None
        if not username:
            errors.append("Choose the sponsor to add.")
        elif sponsor is None:
            errors.append(f"No user is called “{username}”.")
    return agents, action, sponsor, errors


@login_required
@require_http_methods(["GET", "POST"])
def agent_bulk(request):
    """GET: the one confirmation page (what ends for each selected agent); POST: apply it, all or nothing."""
    data = request.POST if request.method == "POST" else request.GET
    filters = list_filters(data, prefix="back.")
    agents, action, sponsor, errors = _selection(request, data)
    if errors:
        for error in errors:
            messages.error(request, error)
        return redirect(_list_url(filters))
    if request.method == "POST":
        try:
            changed = bulk_actions.agents_bulk_apply(actor=request.user, agents=agents, action=action,
                                                     sponsor=sponsor, **change_views.break_glass_from(request))
        except ValidationError as error:
            flash_errors(request, error)
            return redirect(_list_url(filters))
        if (waiting := change_views.pending_redirect(request, changed)) is not None:
            return waiting
        done = {"disable": "disabled", "enable": "enabled", "retire": "retired",
                "add_sponsor": f"sponsored by {sponsor.username if sponsor else ''}"}[action]
        messages.success(request, f"{changed} agent{'s' if changed != 1 else ''} {done}.")
        return redirect(_list_url(filters))
    rows = bulk_actions.bulk_preview(request.user, agents, action)
    return render(request, "agents/agent_bulk_confirm.html", {
        "rows": rows, "action": action, "action_label": bulk_actions.ACTIONS[action], "sponsor": sponsor,
        "refused": [row for row in rows if row["refused"]], "filters": filters, "back": _list_url(filters),
        "blast_radius": registry.blast_radius(request.user, agents, action),  # docs/blast-radius.md
        "totals": {key: sum(row["ends"].get(key, 0) for row in rows) for key in ("tokens", "assignments",
                                                                                  "credentials")},
    })


@login_required
@require_GET
def agent_export(request):
    """The (filtered) agents list of the current workspace as CSV (or JSON with ``?format=json``)."""
    workspace = request.workspace
    if workspace is None:
        raise Http404("You are not a member of any workspace.")
    agents = selectors.agent_list(request.user, workspace, list_filters(request.GET))[:settings.EXPORT_MAX_ROWS]

    def rows():
        batch = []
        for agent in agents.iterator(chunk_size=500):
            batch.append(agent)
            if len(batch) == 500:
                yield from _export_rows(batch)
                batch = []
        yield from _export_rows(batch)

    return streamed_export(request, rows(), EXPORT_COLUMNS, f"agents-{workspace.slug}")


def _export_rows(agents):
    selectors.with_last_used(agents)
    for agent in agents:
        people = getattr(agent, "people", [])
        yield {"name": agent.name, "blueprint": agent.blueprint.name, "version": agent.blueprint.version,
               "status": agent.status, "identity_type": agent.identity_type, "scope": agent.scope,
               "sponsors": ";".join(p.user.username for p in people if p.permission.codename == policy.SPONSOR_AGENT),
               "owners": ";".join(p.user.username for p in people if p.permission.codename == policy.OWN_AGENT),
               "expires_at": agent.expires_at.isoformat() if agent.expires_at else "",
               "last_used_at": agent.last_used_at.isoformat() if agent.last_used_at else "",
               "created_at": agent.created_at.isoformat()}


@login_required
@require_GET
def bulk_template(request):
    """A CSV file to fill in for bulk upload: the bulk file's header (docs/design.md) and one example row."""
    response = HttpResponse(csv_text([bulk.COLUMNS[:8], TEMPLATE_EXAMPLE]), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="agents-bulk-template.csv"'
    return response
