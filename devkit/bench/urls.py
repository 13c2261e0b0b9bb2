"""URLs of the benchmark server only (``devkit.bench.wsgi``): the portal's own, plus a trivial signed-in page.

``/bench/ping/`` is the reference the OAuth benchmarks compare against: the full middleware stack and a session
sign-in, then a few bytes. It names the worker process so the load generator can spread its keep-alive
connections evenly over the workers. Production never routes here (``ROOT_URLCONF`` stays ``portal.urls``).
"""

from __future__ import annotations

import os

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns


@login_required
def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"ok {os.getpid()}", content_type="text/plain")


urlpatterns = [path("bench/ping/", ping, name="bench-ping"), *portal_urlpatterns]
