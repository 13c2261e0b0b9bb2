"""The JWKS (R25) and the signing-keys page (docs/oauth.md, "Signing keys")."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from governance.signing import keys, rotation, selectors
from governance.signing.choices import KeyState
from portal import rbac
from portal.viewutils import act, page

VIEW_FORBIDDEN = "The signing keys are open to Global and Security Administrators and to security readers."


@require_GET
def jwks(request):
    """The published keys as an RFC 7517 set (public halves only): anyone may fetch them, browsers included."""
    response = JsonResponse(keys.jwks())
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response


@login_required
@require_GET
def signing_key_list(request):
    rbac.require(rotation.can_view_signing_keys(request.user), VIEW_FORBIDDEN)
    listing = page(request, selectors.signing_keys_visible_to(request.user))
    selectors.with_live_tokens(listing.object_list)
    return render(request, "signing/key_list.html", {
        "page": listing, "can_manage": rotation.can_manage_signing_keys(request.user),
        "publish_seconds": selectors.publish_period(), "active": "signing-keys"})


def _confirm(request, *, action: str, key=None):
    """GET: say what will happen; POST: do it. Readers see the page's keys but may not change them (403)."""
    rbac.require(rotation.can_view_signing_keys(request.user), VIEW_FORBIDDEN)
    if key is not None:
        key = selectors.signing_key_get(request.user, key)
    rbac.require(rotation.can_manage_signing_keys(request.user), rotation.MANAGE_FORBIDDEN)
    if request.method == "POST":
        if action == "rotate":
            act(request, rotation.signing_key_rotate, lambda k: f"Key {k.kid} published; it signs after the "
                "publication period, or when you activate it.")
        elif action == "activate":
            act(request, rotation.signing_key_activate, lambda k: f"Key {k.kid} now signs new tokens.", key=key)
        else:
            act(request, rotation.signing_key_retire, lambda k: f"Key {k.kid} retired.", key=key)
        return redirect("signing-key-list")
    waiting = selectors.signing_keys_visible_to(request.user).filter(state=KeyState.PUBLISHED).first()
    signing = selectors.signing_keys_visible_to(request.user).filter(state=KeyState.ACTIVE).first()
    return render(request, "signing/key_confirm.html", {
        "action": action, "key": key, "waiting": waiting, "signing": signing,
        "publish_seconds": selectors.publish_period(), "active": "signing-keys"})


@login_required
@require_http_methods(["GET", "POST"])
def signing_key_rotate(request):
    return _confirm(request, action="rotate")


@login_required
@require_http_methods(["GET", "POST"])
def signing_key_activate(request, key_id: int):
    return _confirm(request, action="activate", key=key_id)


@login_required
@require_http_methods(["GET", "POST"])
def signing_key_retire(request, key_id: int):
    return _confirm(request, action="retire", key=key_id)
