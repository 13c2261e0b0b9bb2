"""Blast-radius confirmation pages (docs/blast-radius.md): the panel the agent pages show before a disable or a
retire (``agents.signals.blast_radius``), and the confirmations of revoking a credential, ending an assignment and
removing an access package. Each shows its action's one preview (``previews``) and posts to the action's own page,
which calls its service; removing a package asks for a reason, so its page takes the post itself."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from agents import policy as agent_policy
from agents import selectors as agent_selectors
from agents.models import Credential, FederatedCredential, KeyCredential
from governance.access import services as access_packages
from governance.access.forms import PackageRemoveForm
from governance.access.models import AccessPackage
from governance.impact import previews
from portal import rbac

PANEL = "governance/impact/partials/blast_radius.html"
#: The credential kinds a person revokes, their models, and the page the revocation posts to.
CREDENTIAL_KINDS = {
    "secret": (Credential, "identity__agent", "agent-credential-revoke", "client secret"),
    "key": (KeyCredential, "identity__agent", "agent-key-credential-revoke", "key credential"),
    "federated": (FederatedCredential, "agent", "agent-federated-credential-revoke", "federated credential"),
}


def agents_panel(user, agents, action: str) -> dict | None:
    """The answer to ``agents.signals.blast_radius``: the preview and the template that shows it."""
    if action not in previews.AGENT_ACTIONS:
        return None
    return {"template": PANEL, "radius": previews.agents_preview(agents, action)}


def credential_for(user, agent_id: int, kind: str, credential_id: int):
    """The agent (hidden → 404) and its credential of that kind (not its → 404); revoking it needs to manage the
    agent (→ 403)."""
    if kind not in CREDENTIAL_KINDS:
        raise Http404("No such kind of credential.")
    agent = agent_selectors.agent_get(user, agent_id)
    model, owner, _url, _word = CREDENTIAL_KINDS[kind]
    credential = get_object_or_404(model, pk=credential_id, **{owner: agent})
    if not agent_policy.can_manage_agent(user, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners manage its credentials.")
    return agent, credential


@login_required
@require_GET
def credential_revoke_confirm(request, agent_id: int, kind: str, credential_id: int):
    agent, credential = credential_for(request.user, agent_id, kind, credential_id)
    _model, _owner, url_name, word = CREDENTIAL_KINDS[kind]
    if credential.revoked_at is not None:
        raise Http404("This credential is already revoked.")
    return render(request, "governance/impact/confirm.html", {
        "title": f"Revoke a {word} of {agent.name}?", "radius": previews.credential_preview(credential),
        "lead": f"Callers that sign in with this {word} stop getting tokens for {agent.name} at once. Tokens "
                f"already issued are not revoked: they end at their short expiry.",
        "post_to": reverse(url_name, args=[agent.pk, credential.pk]), "button": f"Revoke this {word}",
        "cancel": reverse("agent-credentials" if kind != "secret" else "agent-detail", args=[agent.pk]),
        "panel": PANEL})


def assignment_for(user, assignment_id: int):
    """A visible assignment (else 404) that the user may end (else 403)."""
    assignment = access_packages.assignments_visible_to(user).select_related("agent", "package", "requested_by") \
        .filter(pk=assignment_id).first()
    if assignment is None:
        raise Http404("No such assignment.")
    if not access_packages.may_manage_assignment(user, assignment):
        raise PermissionDenied("Only the agent's owners and sponsors revoke its access.")
    return assignment


@login_required
@require_GET
def assignment_end_confirm(request, assignment_id: int):
    assignment = assignment_for(request.user, assignment_id)
    if assignment.status not in ("pending", "active"):
        raise Http404("This assignment has already ended.")
    return render(request, "governance/impact/confirm.html", {
        "title": f"End {assignment.package.name} for {assignment.agent.name}?",
        "radius": previews.assignment_preview(assignment),
        "lead": f"The permissions of {assignment.package.name} end at once for {assignment.agent.name}, and so do "
                f"the access tokens that carry them.",
        "post_to": reverse("assignment-revoke", args=[assignment.pk]), "button": "End it now",
        "cancel": reverse("assignment-detail", args=[assignment.pk]), "panel": PANEL})


def package_for(user, package_id: int) -> AccessPackage:
    """A package of a workspace the user sees (else 404) that the user may remove: its workspace's owners, as for
    editing it (else 403)."""
    package = AccessPackage.objects.filter(pk=package_id, workspace__in=rbac.workspaces_visible_to(user)) \
        .select_related("workspace").first()
    if package is None:
        raise Http404("No such access package.")
    if not rbac.has_workspace_perm(user, package.workspace, rbac.MANAGE_MEMBERS):
        raise PermissionDenied("Only the workspace's owners manage its access packages.")
    return package


@login_required
@require_http_methods(["GET", "POST"])
def package_remove_confirm(request, package_id: int):
    """Removing an access package (docs/blast-radius.md): what stops first, then, with a reason, the removal."""
    package = package_for(request.user, package_id)
    if package.removed_at is not None:
        messages.info(request, f"{package.name} was already removed.")
        return redirect("package-detail", package_id=package.pk)
    form = PackageRemoveForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            access_packages.package_remove(actor=request.user, package=package, reason=form.cleaned_data["reason"])
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Access package {package.name} removed: its assignments ended.")
            return redirect("package-detail", package_id=package.pk)
    return render(request, "governance/impact/package_remove.html", {
        "title": f"Remove the access package {package.name}?", "package": package, "form": form,
        "radius": previews.package_preview(package), "panel": PANEL,
        "lead": f"Every pending request and active assignment of {package.name} ends at once, and so do the access "
                f"tokens that carry its permissions. The package and its history stay, marked removed; nobody can "
                f"request it again."})
