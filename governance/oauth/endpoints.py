"""``/oauth/token/`` and ``/oauth/revoke/``: the people's-client grants here, everything else handed on unchanged
(docs/oauth.md, "Authorization code, consent and refresh tokens").

The authorization-code and refresh-token grants, and revocation by an OAuth client (``OAuthClient``), are served by
``governance.oauth.grants``; client credentials, token exchange and an agent's revocation go to
``governance.signin.oauth.token`` / ``.revoke`` as they are. Both read parameters the same way
(``signin.oauth.read_parameters``: body cap, no URL parameters, no repeats, lengths and characters, HTTP Basic),
share the rate-limit gate (``request_gate``), the error bodies and the no-store headers. One difference: an OAuth
client's id may be up to 300 characters (a client ID metadata document's URL), where an agent's is at most 64; the
form's ``client_id`` is read here with that limit, so the other grants keep theirs.
"""

from __future__ import annotations

import json

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from governance.oauth import authorize, grants
from governance.signin import oauth as signin_oauth
from governance.signin.issuance import Refusal

GRANT_PARAMETERS = ("grant_type", "scope", "client_secret", "resource")  # checked by read_parameters
REVOKE_PARAMETERS = ("token", "token_type_hint", "client_secret")
# The parameters only these grants read, with their longest values (checked here, like read_parameters' own).
GRANT_LIMITS = {"code": 128, "redirect_uri": 2000, "code_verifier": 128, "refresh_token": 256}
MAX_CLIENT_ID = 300


def _form_value(request: HttpRequest, name: str) -> str:
    """A form value, or "" when the body cannot be read as a form (``read_parameters`` then says why)."""
    if signin_oauth.content_length(request) > signin_oauth.MAX_BODY_BYTES or request.META.get("QUERY_STRING"):
        return ""
    try:
        return request.POST.get(name, "")
    except (SuspiciousOperation, MultiPartParserError):
        return ""


@sensitive_variables("parameters", "values")
def _read(request: HttpRequest, names: tuple[str, ...], extra: dict[str, int] | None = None
          ) -> signin_oauth.Parameters:
    """``read_parameters`` for ``names``; then each of ``extra`` (name → longest value) checked the same way, and the
    form's ``client_id`` up to ``MAX_CLIENT_ID`` characters (HTTP Basic keeps the agents' limit)."""
    extra = extra or {}
    parameters = signin_oauth.read_parameters(request, names)
    values = {**parameters.values, **dict.fromkeys(extra, "")}
    if parameters.malformed is not None:
        return signin_oauth.Parameters(values, parameters.client_id, "", parameters.malformed)
    problem = ""
    for name, limit in extra.items():
        values[name] = _form_value(request, name)
        if len(values[name]) > limit or not signin_oauth.VSCHAR.fullmatch(values[name]):
            problem = f"{name} is too long (at most {limit} characters) or holds a character that is not allowed."
            break
    client_id, secret = parameters.client_id, parameters.secret
    if not problem and not request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("basic "):
        client_id, secret = _form_value(request, "client_id"), values.get("client_secret", "")
        if len(request.POST.getlist("client_id")) > 1:
            problem = "Duplicate client_id parameter."
        elif len(client_id) > MAX_CLIENT_ID or not signin_oauth.VSCHAR.fullmatch(client_id):
            problem = f"client_id is too long (at most {MAX_CLIENT_ID} characters) or holds a character that is " \
                      f"not allowed."
    if problem:
        kept = {name: "" if name in extra or name in signin_oauth.SECRET_PARAMETERS else value
                for name, value in values.items()}
        return signin_oauth.Parameters(kept, signin_oauth.printable(client_id, MAX_CLIENT_ID), "",
                                       Refusal("invalid_request", problem, f"malformed request: {problem}"))
    return signin_oauth.Parameters(values, client_id, secret, None)


@sensitive_variables("parameters", "form")
def read_grant_request(request: HttpRequest) -> grants.GrantRequest:
    parameters = _read(request, GRANT_PARAMETERS, GRANT_LIMITS)
    form, malformed = parameters.values, parameters.malformed
    if malformed is None and len(request.POST.getlist("resource")) > 1:
        malformed = Refusal("invalid_target", "A token is issued for one resource only.", "several resources")
    return grants.GrantRequest(
        grant_type=form["grant_type"], client_id=parameters.client_id, secret=parameters.secret,
        at=timezone.now(), ip=signin_oauth.client_ip(request), code=form["code"], redirect_uri=form["redirect_uri"],
        code_verifier=form["code_verifier"], refresh_token=form["refresh_token"], resource=form["resource"],
        scopes=tuple(name for name in form["scope"].split(" ") if name) or None, malformed=malformed)


def _token_response(result: grants.GrantOutcome) -> HttpResponse:
    outcome = result.outcome
    if outcome.refusal is not None:
        return signin_oauth.error_response(outcome.refusal)
    body = {"access_token": outcome.access_token, "expires_in": outcome.expires_in, "token_type": "Bearer",
            "scope": outcome.scope}
    if result.refresh_token:
        body["refresh_token"] = result.refresh_token
    return signin_oauth.no_store(HttpResponse(json.dumps(body), content_type="application/json"))


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "subject_token", "code", "code_verifier", "refresh_token")
def token(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/token/``: authorization code and refresh token here; every other grant to the agents' endpoint."""
    if _form_value(request, "grant_type") not in grants.GRANTS:
        return signin_oauth.token(request)
    grant_request = read_grant_request(request)
    client_id = grant_request.client_id if grant_request.malformed is None else ""
    gate = signin_oauth.request_gate(grant_request.ip, client_id)
    if gate.retry_after:
        return signin_oauth.too_many_requests(gate.retry_after)
    if gate.locked:
        result = grants.grant_issue(grants.GrantRequest(
            grant_type=grant_request.grant_type, client_id=client_id, secret="", at=grant_request.at,
            ip=grant_request.ip, malformed=Refusal("invalid_client", reason="client id locked out at this address")))
    else:
        result = grants.grant_issue(grant_request)
    if result.failed_authentication:
        signin_oauth.failed_authentication(client_id, grant_request.ip)
    return _token_response(result)


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "token")
@sensitive_variables("parameters")
def revoke(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/revoke/`` (RFC 7009). An OAuth client's request (its client id names one; a public client sends
    the client id alone) revokes its refresh token's family or its access token; an agent's goes to the agents'
    endpoint unchanged. Success is 200 with an empty body whether or not the token was the client's."""
    client_id = _form_value(request, "client_id")
    basic = request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("basic ")
    if basic or authorize.find_client(client_id) is None:
        parameters = signin_oauth.read_parameters(request, signin_oauth.TOKEN_HOLDER_PARAMETERS) if basic else None
        if parameters is None or authorize.find_client(parameters.client_id) is None:
            return signin_oauth.revoke(request)
    parameters = _read(request, REVOKE_PARAMETERS)
    ip = signin_oauth.client_ip(request)
    gate = signin_oauth.request_gate(ip, "" if parameters.malformed else parameters.client_id)
    if gate.retry_after:
        return signin_oauth.too_many_requests(gate.retry_after)
    if parameters.malformed is not None:
        return signin_oauth.error_response(parameters.malformed)
    value = parameters.values["token"]
    if not value:
        return signin_oauth.error_response(Refusal("invalid_request", "Missing token parameter."))
    client, _why = (None, "locked") if gate.locked else grants.authenticate(parameters.client_id, parameters.secret,
                                                                            timezone.now())
    if client is None:
        return signin_oauth.error_response(Refusal("invalid_client"))
    grants.token_revoke(client=client, value=value, hint=parameters.values["token_type_hint"])
    return HttpResponse("", content_type="application/json")
