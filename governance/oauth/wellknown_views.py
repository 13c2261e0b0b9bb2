"""The well-known documents (R24, R26): JSON, readable from any origin, cacheable for a few minutes, and served at
the exact URL clients build (no redirect: docs/oauth.md, "Discovery")."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from governance.oauth import discovery

CACHE_SECONDS = 300
ALLOWED_METHODS = ["GET", "HEAD", "OPTIONS"]


def _base_path() -> str:
    return urlsplit(settings.PORTAL_BASE_URL).path.strip("/")


def _answer(request, document) -> HttpResponse:
    if request.method == "OPTIONS":  # a browser's CORS preflight
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response["Access-Control-Allow-Headers"] = "*"
    else:
        response = JsonResponse(document())
        response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    response["Access-Control-Allow-Origin"] = "*"
    return response


def _check_suffix(suffix: str | None) -> None:
    """RFC 8414 §3.1 / RFC 9728 §3.1 insert the well-known name before the issuer's path: a suffix is answered only
    when it is exactly the path of ``PORTAL_BASE_URL``."""
    base = _base_path()
    if suffix is not None and (not base or suffix.strip("/") != base):
        raise Http404("No issuer at that path.")


@require_http_methods(ALLOWED_METHODS)
def authorization_server(request, suffix: str | None = None):
    _check_suffix(suffix)
    return _answer(request, discovery.authorization_server_metadata)


@require_http_methods(ALLOWED_METHODS)
def openid_configuration(request, suffix: str | None = None):
    _check_suffix(suffix)
    return _answer(request, discovery.openid_configuration)


@require_http_methods(ALLOWED_METHODS)
def protected_resource(request, suffix: str | None = None):
    _check_suffix(suffix)
    return _answer(request, discovery.protected_resource_metadata)
