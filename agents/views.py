"""Registry pages: the agent list and detail, the setup wizard, lifecycle actions, blueprints, the skill map and
bulk uploads. Thin: parse, fetch through selectors (hidden → 404), call one service (refused → 403), render."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import attributes, bulk, catalog, manifests, policy, registry, selectors, timeline, trust
from agents.choices import AgentScope, AgentStatus, IdentityType, PublisherKind
from agents.forms import (
    AgentSetupForm,
    AttributeForm,
    AttributeSetForm,
    BlueprintUploadForm,
    BulkUploadForm,
    FederatedCredentialForm,
    KeyCredentialForm,
    PersonForm,
    ResolveSkillForm,
    SkillMapForm,
)
from agents.models import (
    AttributeSet,
    Blueprint,
    BlueprintSkill,
    BulkJob,
    Credential,
    FederatedCredential,
    KeyCredential,
    Skill,
)
from portal import change_views, rbac
from portal.viewutils import act, flash_errors, flash_form_errors, page

BULK_KEYS_SESSION = "bulk_secret_keys"
FILTERS = ("q", "status", "identity_type", "scope", "publisher_kind", "sponsor", "owner", "attribute", "expiring",
           "sort")


def _workspace_or_404(request):
    if request.workspace is None:
        raise Http404("You are not a member of any workspace.")
    return request.workspace


# --- list and detail ------------------------------------------------------------------------------------


@login_required
@require_GET
def agent_list(request):
    workspace = request.workspace
    params = {key: request.GET.get(key, "").strip() for key in FILTERS}
    agents = selectors.agent_list(request.user, workspace, params) if workspace else []
    query = urlencode({k: v for k, v in params.items() if v})
    can_setup = workspace is not None and (policy.can_create_agent(request.user, workspace, AgentScope.WORKSPACE)
                                          or policy.can_create_agent(request.user, workspace, AgentScope.USER))
    agents_page = page(request, agents) if workspace else None
    if agents_page is not None:
        selectors.with_last_used(agents_page)  # sets last_used_at on the page's own objects: one query per page
    return render(request, "agents/agent_list.html", {
        "page": agents_page, "params": params, "query": query,
        "statuses": AgentStatus.choices, "identity_types": IdentityType.choices, "scopes": AgentScope.choices,
        "publisher_kinds": PublisherKind.choices, "can_setup": can_setup,
        "can_bulk": workspace is not None and rbac.has_workspace_perm(request.user, workspace, rbac.VIEW_WORKSPACE),
    })


@login_required
@require_GET
def agent_detail(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    detail = selectors.agent_detail(agent)
    return render(request, "agents/agent_detail.html", {
        "agent": agent, **detail, "notes": registry.status_notes(agent),
        **_attribute_context(request.user, agent, detail["attributes"]),
        "last_used_at": selectors.last_used([agent.pk]).get(agent.pk),
        "extra_grants": registry.extra_grants(agent),
        "can_activate": agent.status in (AgentStatus.DRAFT, AgentStatus.PENDING_APPROVAL)
        and (policy.can_manage_agent(request.user, agent) or agent.created_by_id == request.user.pk)
        and not registry.activation_problems(agent, agent.blueprint),
        "can_manage": policy.can_manage_agent(request.user, agent),
        "can_toggle": policy.can_toggle_agent(request.user, agent),
        "person_form": PersonForm(), "attribute_form": AttributeForm(),
        "panels": registry.detail_panels(request.user, agent),
        "timeline": timeline.agent_timeline(request.user, agent),
    })


# --- setup wizard (R1, R2, R7, R8, R10) ------------------------------------------------------------------------


@login_required
@require_GET
def setup_choose_blueprint(request):
    workspace = _workspace_or_404(request)
    if not (policy.can_create_agent(request.user, workspace, AgentScope.USER)
            or policy.can_create_agent(request.user, workspace, AgentScope.WORKSPACE)):
        raise PermissionDenied("You may not set up agents in this workspace.")
    blueprints = list(selectors.blueprints_latest())
    latest = {}
    for blueprint in blueprints:
        latest.setdefault(blueprint.name, blueprint)
    rows = [(blueprint, registry.setup_notices(blueprint)) for blueprint in latest.values()]
    return render(request, "agents/setup_blueprint.html", {
        "rows": rows, "identity_kinds": settings.AGENT_IDENTITY_PUBLISHER_KINDS,
    })


#: The wizard's steps after the blueprint (step 1): their names and the form fields each asks for. Every step posts
#: the whole form (the other steps' answers ride along as hidden fields); Review writes nothing, Create writes.
WIZARD_STEPS = [(1, "Blueprint"), (2, "Identity"), (3, "Scope"), (4, "Sponsors and owners"), (5, "Details"),
                (6, "Review")]
WIZARD_FIELDS = {2: ("name", "identity_type", "run_as_user", "with_agent_user"), 3: ("scope",),
                 4: ("sponsors", "owners"), 5: ("attributes", "expires_at", "justification")}
LAST_FORM_STEP = 5


def _wizard_step(request) -> int:
    """The step the page was posted from (a post without one is the whole form at once: its last step)."""
    try:
        step = int(request.POST.get("step", LAST_FORM_STEP))
    except ValueError:
        step = LAST_FORM_STEP
    return min(max(step, 2), LAST_FORM_STEP)


def _failing_steps(form, upto: int = LAST_FORM_STEP) -> list[int]:
    """The steps (up to ``upto``) with a field in error; a form-wide error belongs to the last step."""
    steps = [step for step, fields in WIZARD_FIELDS.items() if step <= upto and any(f in form.errors for f in fields)]
    if form.non_field_errors() and upto == LAST_FORM_STEP:
        steps.append(LAST_FORM_STEP)
    return sorted(set(steps))


def _setup_choices(request, workspace, blueprint):
    identity = [(IdentityType.USER_ACCOUNT, "Run as an existing user account")]
    if blueprint.publisher_kind in settings.AGENT_IDENTITY_PUBLISHER_KINDS:  # R2
        identity.insert(0, (IdentityType.AGENT_IDENTITY, "New agent identity (its own credentials, fixed permissions)"))
    scopes = [(AgentScope.USER, "User — visible to you and the workspace's owners")]
    if policy.can_create_agent(request.user, workspace, AgentScope.WORKSPACE):  # R10
        scopes.insert(0, (AgentScope.WORKSPACE, "Workspace — every member can use it"))
    return identity, scopes


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def setup_agent(request, blueprint_id: int):
    workspace = _workspace_or_404(request)
    blueprint = selectors.blueprint_get(blueprint_id)
    identity_choices, scope_choices = _setup_choices(request, workspace, blueprint)
    if not (policy.can_create_agent(request.user, workspace, AgentScope.USER)):
        raise PermissionDenied("You may not set up agents in this workspace.")
    initial = {"identity_type": identity_choices[0][0], "scope": scope_choices[0][0],
               "sponsors": request.user.username, "owners": request.user.username,
               "name": slugify(blueprint.display_name), "with_agent_user": True}
    form = AgentSetupForm(request.POST or None, initial=initial, identity_choices=identity_choices,
                          scope_choices=scope_choices)
    context = {"blueprint": blueprint, "form": form, "permissions": blueprint.required_permissions.all(),
               "workspace": workspace, "notices": registry.setup_notices(blueprint),
               "no_secrets": workspace.forbid_new_secrets, "steps": WIZARD_STEPS, "step": 2, "show_errors": True}
    step = _wizard_step(request) if request.method == "POST" else 2
    if request.method == "POST" and request.POST.get("confirm") != "1" and (
            request.POST.get("go") == "back" or step < LAST_FORM_STEP):
        if request.POST.get("go") == "back":  # back one step: nothing is checked, nothing is lost
            return _wizard_page(request, context, step=max(2, step - 1), show_errors=False)
        form.is_valid()
        failing = _failing_steps(form, upto=step)
        if failing:  # every problem of the steps so far, at once, on the first step that has one
            return _wizard_page(request, context, step=failing[0], show_errors=True, upto=step)
        return _wizard_page(request, context, step=step + 1, show_errors=False)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        spec = registry.AgentSpec(
            blueprint=blueprint, name=data["name"], identity_type=data["identity_type"], scope=data["scope"],
            sponsors=data["sponsors"], owners=data["owners"],
            run_as_user=data["run_as_user"] if data["identity_type"] == IdentityType.USER_ACCOUNT else None,
            attributes=data["attributes"], expires_at=data["expires_at"], with_agent_user=data["with_agent_user"],
            justification=data["justification"],
        )
        try:
            if request.POST.get("confirm") != "1":  # review step: validate everything, write nothing
                registry.agents_provision(actor=request.user, workspace=workspace, specs=[spec], dry_run=True)
                return render(request, "agents/setup_review.html", {**context, "spec": spec})
            result = registry.agent_create(actor=request.user, workspace=workspace, spec=spec)
        except registry.ProvisioningError as error:
            for _row, column, message in error.problems:
                form.add_error(column if column in form.fields and column != "blueprint" else None, message)
            failing = _failing_steps(form)
            return _wizard_page(request, context, step=failing[0] if failing else LAST_FORM_STEP, show_errors=True)
        else:
            if result.agent.status == AgentStatus.PENDING_APPROVAL:
                messages.info(request, f"{result.agent.name} waits for a Global Administrator's approval; you will "
                                       f"be notified.")
            else:
                messages.success(request, f"Agent {result.agent.name} is set up.")
            if result.client_secret:
                return _show_secret(request, result.agent, result.client_id, result.client_secret, created=True)
            if result.agent.identity_type == IdentityType.AGENT_IDENTITY:  # no secret: the workspace forbids them
                messages.info(request, f"No secret was issued to {result.agent.name}: add a key or a federated "
                                       f"credential so that it can get tokens.")
                return redirect("agent-credentials", agent_id=result.agent.pk)
            return redirect("agent-detail", agent_id=result.agent.pk)
    if form.is_bound and form.errors:
        failing = _failing_steps(form)
        return _wizard_page(request, context, step=failing[0] if failing else LAST_FORM_STEP, show_errors=True)
    return _wizard_page(request, context, step=2, show_errors=False)


def _wizard_page(request, context: dict, *, step: int, show_errors: bool, upto: int = LAST_FORM_STEP):
    """One step of the wizard: its fields shown, the others carried as hidden fields; with ``show_errors`` every
    problem of the steps up to ``upto`` is listed at once above the form (each naming its step)."""
    form = context["form"]
    step_names = dict(WIZARD_STEPS)
    problems = []
    if show_errors:
        for number, fields in WIZARD_FIELDS.items():
            for name in fields:
                if number <= upto and name in form.errors:
                    problems += [(step_names[number], form[name].label, message) for message in form.errors[name]]
        problems += [(step_names[LAST_FORM_STEP], "", message) for message in form.non_field_errors()]
    identity = form["identity_type"].value() or ""
    return render(request, "agents/setup_agent.html", {
        **context, "step": step, "show_errors": show_errors, "problems": problems,
        "step_fields": [form[name] for name in WIZARD_FIELDS[step]],
        "carried": [form[name] for n, fields in WIZARD_FIELDS.items() if n != step for name in fields],
        "identity": identity})


SECRET_ONCE = "agents.secret_once"


def show_secret_once(request, agent, client_id: str, secret: str, *, created: bool, back_url: str = "",
                     back_label: str = ""):
    """Post/Redirect/Get for a new secret: it waits in the person's session for the one page that shows it
    (``agent_secret_once``), which takes it out; reloading that page shows it no more and re-submits nothing."""
    request.session[SECRET_ONCE] = {"agent_id": agent.pk, "client_id": client_id, "secret": secret,
                                    "created": created, "back_url": back_url, "back_label": back_label}
    return redirect("agent-secret-once", agent_id=agent.pk)


def _show_secret(request, agent, client_id: str, secret: str, *, created: bool):
    return show_secret_once(request, agent, client_id, secret, created=created)


@login_required
@never_cache
@require_GET
def agent_secret_once(request, agent_id: int):
    """The new secret, once: taken out of the session as it is shown, never cached."""
    agent = selectors.agent_get(request.user, agent_id)
    shown = request.session.get(SECRET_ONCE)
    if not shown or shown.get("agent_id") != agent.pk:
        messages.info(request, f"The secret of {agent.name} was shown once and is no longer available. If you did "
                               f"not store it, rotate the secret on this page.")
        return redirect("agent-detail", agent_id=agent.pk)
    del request.session[SECRET_ONCE]
    response = render(request, "agents/secret_once.html", {
        "agent": agent, "client_id": shown["client_id"], "secret": shown["secret"], "created": shown["created"],
        "back_url": shown.get("back_url", ""), "back_label": shown.get("back_label", "")})
    response["Cache-Control"] = "no-store"
    return response


# --- lifecycle ------------------------------------------------------------------------------------------------


@login_required
@require_POST
def agent_activate(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    act(request, registry.agent_activate, lambda a: f"{a.name} is active.", agent=agent)
    return redirect("agent-detail", agent_id=agent.pk)


@login_required
@require_http_methods(["GET", "POST"])
def agent_disable(request, agent_id: int):
    """GET: the confirmation, with what stops (docs/blast-radius.md); POST: disable."""
    agent = selectors.agent_get(request.user, agent_id)
    if request.method == "POST":
        act(request, registry.agent_disable, lambda a: f"{a.name} is disabled.", agent=agent)
        return redirect("agent-detail", agent_id=agent.pk)
    if not policy.can_toggle_agent(request.user, agent):
        raise PermissionDenied("Only the agent's sponsors and owners can disable it.")
    if agent.status in (AgentStatus.DISABLED, AgentStatus.RETIRED):
        messages.info(request, f"{agent.name} is {agent.get_status_display().lower()} already.")
        return redirect("agent-detail", agent_id=agent.pk)
    return render(request, "agents/agent_disable.html", {
        "agent": agent, "blast_radius": registry.blast_radius(request.user, [agent], "disable")})


@login_required
@require_POST
def agent_enable(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    act(request, registry.agent_enable, lambda a: f"{a.name} is active again.", agent=agent)
    return redirect("agent-detail", agent_id=agent.pk)


@login_required
@require_http_methods(["GET", "POST"])
def agent_retire(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    if not policy.can_manage_agent(request.user, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners can retire it.")
    if request.method == "POST":
        counts = act(request, registry.agent_retire,
                     lambda c: f"{agent.name} is retired: {c['credentials_revoked']} credential(s) revoked, "
                               f"{c['grants_ended']} permission(s) ended.", agent=agent)
        return redirect("agent-detail", agent_id=agent.pk) if counts is not None else redirect(
            "agent-retire", agent_id=agent.pk)
    return render(request, "agents/agent_retire.html", {"agent": agent, **registry.retirement_preview(agent),
                                                        "blast_radius": registry.blast_radius(request.user, [agent],
                                                                                              "retire")})


@login_required
@never_cache
@require_POST
def credential_rotate(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    try:
        credential, secret = registry.credential_rotate(actor=request.user, agent=agent)
    except ValidationError as error:
        flash_errors(request, error)
        return redirect("agent-detail", agent_id=agent.pk)
    return _show_secret(request, agent, credential.identity.client_id, secret, created=False)


@login_required
@require_POST
def credential_revoke(request, agent_id: int, credential_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    credential = get_object_or_404(Credential, pk=credential_id, identity__agent=agent)
    act(request, registry.credential_revoke, lambda c: f"Credential {c.prefix}… revoked.", credential=credential)
    return redirect("agent-detail", agent_id=agent.pk)


# --- credentials without secrets: keys and federated credentials (R28) -------------------------------------------


def _credentials_page(request, agent, *, key_form=None, federated_form=None, status: int = 200):
    from django.utils import timezone

    now = timezone.now()
    secrets = list(Credential.objects.filter(identity__agent=agent).order_by("-created_at"))
    keys = list(KeyCredential.objects.filter(identity__agent=agent).order_by("-created_at"))
    rules = list(FederatedCredential.objects.filter(agent=agent).order_by("-created_at"))
    defaults = list(trust.inherited_rules(agent))
    for row in (*secrets, *keys):
        row.active_now = row.is_active(now)
    return render(request, "agents/agent_credentials.html", {
        "agent": agent, "secrets": secrets, "keys": keys, "rules": rules, "defaults": defaults,
        "types": sorted(trust.credential_types(agent)),
        "can_manage": policy.can_manage_agent(request.user, agent) and agent.status != AgentStatus.RETIRED,
        "is_admin": trust.is_trust_administrator(request.user),
        "key_form": key_form or KeyCredentialForm(), "federated_form": federated_form or FederatedCredentialForm(),
    }, status=status)


@login_required
@require_GET
def agent_credentials(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    return _credentials_page(request, agent)


@login_required
@require_POST
def key_credential_add(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    form = KeyCredentialForm(request.POST, request.FILES)
    if not form.is_valid():
        return _credentials_page(request, agent, key_form=form, status=400)
    data = form.cleaned_data
    try:
        credential = trust.key_credential_add(actor=request.user, agent=agent, jwk=data["public_key"] or None,
                                              jwks_uri=data["jwks_uri"] or "", expires_at=data["expires_at"])
    except ValidationError as error:
        form.add_error(None, error)
        return _credentials_page(request, agent, key_form=form, status=400)
    messages.success(request, f"Key {credential.kid} added; it works until {credential.expires_at:%Y-%m-%d}.")
    return redirect("agent-credentials", agent_id=agent.pk)


@login_required
@require_http_methods(["GET", "POST"])
def federated_credential_add(request, agent_id: int):
    """The form alone (GET: where the hygiene report's "add federated credential" leads) or its submission."""
    agent = selectors.agent_get(request.user, agent_id)
    if not policy.can_manage_agent(request.user, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners manage its credentials.")
    if request.method == "GET":
        return _credentials_page(request, agent)
    form = FederatedCredentialForm(request.POST)
    if not form.is_valid():
        return _credentials_page(request, agent, federated_form=form, status=400)
    try:
        trust.federated_credential_add(actor=request.user, agent=agent, **form.cleaned_data)
    except ValidationError as error:
        form.add_error(None, error)
        return _credentials_page(request, agent, federated_form=form, status=400)
    messages.success(request, "Federated credential added.")
    return redirect("agent-credentials", agent_id=agent.pk)


@login_required
@require_POST
def key_credential_revoke(request, agent_id: int, credential_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    credential = get_object_or_404(KeyCredential, pk=credential_id, identity__agent=agent)
    act(request, trust.key_credential_revoke, lambda c: f"Key {c.kid} revoked.", credential=credential)
    return redirect("agent-credentials", agent_id=agent.pk)


@login_required
@require_POST
def federated_credential_revoke(request, agent_id: int, credential_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    credential = get_object_or_404(FederatedCredential, pk=credential_id, agent=agent)
    act(request, trust.federated_credential_revoke, lambda c: "Federated credential removed.",
        credential=credential)
    return redirect("agent-credentials", agent_id=agent.pk)


@login_required
@require_POST
def agent_person(request, agent_id: int):
    agent = selectors.agent_get(request.user, agent_id)
    if not policy.can_manage_agent(request.user, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners change owners and sponsors.")
    form = PersonForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("agent-detail", agent_id=agent.pk)
    user, role = form.cleaned_data["user"], form.cleaned_data["role"]
    label = "owner" if role == policy.OWN_AGENT else "sponsor"
    if request.POST.get("remove") == "1":
        act(request, registry.agent_person_remove, lambda _: f"{user.username} is no longer a {label}.",
            agent=agent, user=user, role=role)
    else:
        act(request, registry.agent_person_add, lambda _: f"{user.username} is now a {label}.",
            agent=agent, user=user, role=role)
    return redirect("agent-detail", agent_id=agent.pk)


def _attribute_context(user, agent, values) -> dict:
    """The attribute card: each attribute with its set and protection, and whether this user may change it (R20).
    Protected attributes are read-only, with the reason, for everyone but their assigners."""
    protection = attributes.attribute_protection(a.key for a in values)
    may_edit = attributes.can_edit_attributes(user, agent)
    may_assign_protected = rbac.can_assign_protected_attributes(user)
    return {
        "attribute_rows": [{"attribute": a, "protection": protection[a.key],
                            "editable": may_edit and (may_assign_protected or not protection[a.key].protected)}
                           for a in values],
        "can_edit_attributes": may_edit, "may_assign_protected": may_assign_protected,
        "protected_keys": attributes.protected_keys() if may_edit and not may_assign_protected else [],
    }


@login_required
@require_POST
def agent_attribute(request, agent_id: int):
    """Set or (with ``remove=1``) remove one attribute. A protected one changed by anyone but its assigners — a
    forged form — is a 403 from the service, and nothing changes (R20)."""
    agent = selectors.agent_get(request.user, agent_id)
    form = AttributeForm(request.POST)
    if form.is_valid() and request.POST.get("remove") == "1":
        key = form.cleaned_data["key"]
        act(request, registry.agent_attribute_remove, lambda removed: f"Attribute {key} removed." if removed
            else f"The agent has no attribute {key}.", agent=agent, key=key)
    elif form.is_valid():
        act(request, registry.agent_attribute_set, lambda a: f"Attribute {a.key} set.", agent=agent,
            key=form.cleaned_data["key"], value=form.cleaned_data["value"])
    else:
        messages.error(request, "Give an attribute name and value.")
    return redirect("agent-detail", agent_id=agent.pk)


# --- attribute sets (R20, protected attributes) ----------------------------------------------------------------------


@login_required
@require_GET
def attribute_set_list(request):
    """Which attribute keys belong to which set and which are protected: open to everyone signed in, so owners know
    which attributes are not theirs to set; Global Administrators change them."""
    return render(request, "agents/attribute_set_list.html", {
        "sets": attributes.attribute_sets(), "can_manage": rbac.can_manage_attribute_sets(request.user),
        "protected_keys": attributes.protected_keys(),
    })


@login_required
@require_http_methods(["GET", "POST"])
def attribute_set_edit(request, set_id: int | None = None):
    rbac.require(rbac.can_manage_attribute_sets(request.user), "Only Global Administrators manage attribute sets.")
    attribute_set = get_object_or_404(AttributeSet, pk=set_id) if set_id else None
    initial = {}
    if attribute_set is not None:
        initial = {"name": attribute_set.name, "description": attribute_set.description,
                   "protected": attribute_set.protected,
                   "keys": "\n".join(attribute_set.definitions.values_list("key", flat=True))}
    form = AttributeSetForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            saved = attributes.attribute_set_save(actor=request.user, attribute_set=attribute_set,
                                                  **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Attribute set {saved.name} saved.")
            return redirect("attribute-set-list")
    return render(request, "agents/attribute_set_form.html", {"form": form, "attribute_set": attribute_set})


# --- blueprints and the skill map -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def blueprint_list(request):
    form = BlueprintUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not catalog.can_import_manifests(request.user):
            raise PermissionDenied("Only members of a workspace import manifests.")
        if form.is_valid():
            upload = form.cleaned_data["manifest"]
            try:
                result = manifests.blueprint_import(
                    actor=request.user, data=upload.read(), filename=upload.name,
                    publisher_kind=form.cleaned_data["publisher_kind"] or None)
            except (ValidationError, PermissionDenied) as error:
                form.add_error("manifest", error.messages if isinstance(error, ValidationError) else str(error))
            else:
                if result.created:
                    messages.success(request, f"Imported {result.blueprint}.")
                else:
                    messages.info(request, f"{result.blueprint} is unchanged; no new version.")
                return redirect("blueprint-detail", blueprint_id=result.blueprint.pk)
    return render(request, "agents/blueprint_list.html", {
        "page": page(request, selectors.blueprints_latest()), "form": form,
        "can_import": catalog.can_import_manifests(request.user),
    })


def _blueprint_page(request, blueprint, *, federated_form=None, status: int = 200):
    previous = Blueprint.objects.filter(name=blueprint.name, version__lt=blueprint.version).order_by("-version") \
        .first()
    current = {p.name for p in blueprint.required_permissions.all()}
    before = {p.name for p in previous.required_permissions.all()} if previous else set()
    return render(request, "agents/blueprint_detail.html", {
        "federated_defaults": list(FederatedCredential.objects.filter(blueprint=blueprint, revoked_at__isnull=True)
                                   .order_by("created_at")),
        "can_trust": trust.is_trust_administrator(request.user),
        "federated_form": federated_form or FederatedCredentialForm(),
        "blueprint": blueprint, "previous": previous,
        "permissions": blueprint.required_permissions.all(),
        "added": sorted(current - before) if previous else [], "removed": sorted(before - current),
        "skills": blueprint.skill_refs.select_related("skill__skillset").order_by("name"),
        "versions": Blueprint.objects.filter(name=blueprint.name).order_by("-version"),
        "can_curate": catalog.can_edit_skill_map(request.user), "resolve_form": ResolveSkillForm(),
    }, status=status)


@login_required
@require_GET
def blueprint_detail(request, blueprint_id: int):
    return _blueprint_page(request, selectors.blueprint_get(blueprint_id))


@login_required
@require_POST
def blueprint_federated_credential_add(request, blueprint_id: int):
    """A federated credential every agent of the blueprint inherits (R28): Global and Security Administrators."""
    blueprint = selectors.blueprint_get(blueprint_id)
    if not trust.is_trust_administrator(request.user):
        raise PermissionDenied("Only Global and Security Administrators add blueprint defaults.")
    form = FederatedCredentialForm(request.POST)
    if not form.is_valid():
        return _blueprint_page(request, blueprint, federated_form=form, status=400)
    try:
        trust.federated_credential_add(actor=request.user, blueprint=blueprint, **form.cleaned_data)
    except ValidationError as error:
        form.add_error(None, error)
        return _blueprint_page(request, blueprint, federated_form=form, status=400)
    messages.success(request, f"Every agent of {blueprint.display_name} now trusts this federated credential.")
    return redirect("blueprint-detail", blueprint_id=blueprint.pk)


@login_required
@require_POST
def blueprint_federated_credential_revoke(request, blueprint_id: int, credential_id: int):
    blueprint = selectors.blueprint_get(blueprint_id)
    credential = get_object_or_404(FederatedCredential, pk=credential_id, blueprint=blueprint)
    act(request, trust.federated_credential_revoke, lambda c: "Blueprint default removed.", credential=credential)
    return redirect("blueprint-detail", blueprint_id=blueprint.pk)


@login_required
@require_GET
def blueprint_export(request, blueprint_id: int):
    blueprint = selectors.blueprint_get(blueprint_id)
    response = HttpResponse(manifests.blueprint_export_yaml(blueprint), content_type="application/yaml")
    response["Content-Disposition"] = f'attachment; filename="{blueprint.name}-v{blueprint.version}.yaml"'
    return response


@login_required
@require_POST
def blueprint_resolve_skill(request, blueprint_id: int, ref_id: int):
    blueprint = selectors.blueprint_get(blueprint_id)
    ref = get_object_or_404(BlueprintSkill, pk=ref_id, blueprint=blueprint)
    if not catalog.can_edit_skill_map(request.user):
        raise PermissionDenied("Only owners map skills.")
    form = ResolveSkillForm(request.POST)
    if form.is_valid():
        act(request, catalog.skill_resolve_unknown, lambda s: f"{s.name} mapped.", name=ref.name,
            skillset=form.cleaned_data["skillset"], permissions=list(form.cleaned_data["permissions"]),
            needs_no_permission=form.cleaned_data["needs_no_permission"])
    else:
        messages.error(request, "Choose the skillset, and the permissions or 'reads no protected data'.")
    return redirect("blueprint-detail", blueprint_id=blueprint.pk)


@login_required
@require_GET
def skill_list(request):
    search = request.GET.get("q", "").strip()
    skills = Skill.objects.select_related("skillset__publisher").prefetch_related("permissions").order_by(
        "skillset__name", "name")
    if search:
        skills = skills.filter(name__icontains=search) | skills.filter(skillset__name__icontains=search)
    return render(request, "agents/skill_list.html", {
        "page": page(request, skills), "search": search, "query": urlencode({"q": search}) if search else "",
        "can_curate": catalog.can_edit_skill_map(request.user),
    })


@login_required
@require_http_methods(["GET", "POST"])
def skill_edit(request, skill_id: int):
    skill = get_object_or_404(Skill.objects.select_related("skillset"), pk=skill_id)
    if not catalog.can_edit_skill_map(request.user):
        raise PermissionDenied("Only owners edit the skill map.")
    form = SkillMapForm(request.POST or None, initial={"permissions": skill.permissions.all(),
                                                       "needs_no_permission": skill.needs_no_permission})
    if request.method == "POST" and form.is_valid():
        try:
            saved = catalog.skill_set_permissions(actor=request.user, skill=skill,
                                                  permissions=list(form.cleaned_data["permissions"]),
                                                  needs_no_permission=form.cleaned_data["needs_no_permission"],
                                                  **change_views.break_glass_from(request))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if (waiting := change_views.pending_redirect(request, saved)) is not None:
                return waiting
            messages.success(request, f"Permissions of {skill.name} saved.")
            return redirect("skill-list")
    return render(request, "agents/skill_edit.html", {"skill": skill, "form": form})


# --- bulk provisioning (R9) -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def bulk_upload(request):
    workspace = _workspace_or_404(request)
    if not rbac.has_workspace_perm(request.user, workspace, rbac.VIEW_WORKSPACE):
        raise PermissionDenied("You are not a member of this workspace.")
    form = BulkUploadForm(request.POST or None, request.FILES or None)
    problems = []
    if request.method == "POST" and form.is_valid():
        filename, content = form.cleaned_data["file"]
        try:
            job, key = bulk.bulk_job_start(actor=request.user, workspace=workspace, upload_name=filename,
                                           content=content)
        except registry.ProvisioningError as error:
            problems = error.problems
        except ValidationError as error:
            form.add_error("file", error)
        else:
            keys = request.session.get(BULK_KEYS_SESSION, {})
            keys[str(job.pk)] = key.decode() if isinstance(key, bytes) else key
            request.session[BULK_KEYS_SESSION] = keys
            return redirect("bulk-job", job_id=job.pk)
    return render(request, "agents/bulk_upload.html", {
        "form": form, "problems": problems, "workspace": workspace,
        "jobs": BulkJob.objects.filter(workspace=workspace, requested_by=request.user)[:10],
    })


@login_required
@require_GET
def bulk_job(request, job_id: int):
    job = selectors.bulk_job_get(request.user, job_id)
    has_key = str(job.pk) in request.session.get(BULK_KEYS_SESSION, {})
    template = "agents/partials/bulk_progress.html" if request.htmx else "agents/bulk_job.html"
    return render(request, template, {"job": job, "has_key": has_key})


@login_required
@never_cache
@require_POST
def bulk_job_secrets(request, job_id: int):
    job = selectors.bulk_job_get(request.user, job_id)
    keys = request.session.get(BULK_KEYS_SESSION, {})
    key = keys.get(str(job.pk))
    if key is None:
        raise PermissionDenied("Only the person who uploaded the file can download its secrets, once.")
    try:
        text = bulk.bulk_job_secrets_download(actor=request.user, job=job, key=key.encode())
    except ValidationError as error:
        flash_errors(request, error)
        return redirect("bulk-job", job_id=job.pk)
    keys.pop(str(job.pk), None)
    request.session[BULK_KEYS_SESSION] = keys
    response = HttpResponse(text, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="agent-secrets-{job.pk}.csv"'
    response["Cache-Control"] = "no-store"
    return response
