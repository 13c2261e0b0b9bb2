"""DOT's token endpoint at ``/o/token/``, and the two pages the bench's server and load generator expect of any
server: ``/healthz`` (ready) and ``/bench/ping/`` (names its worker, to spread keep-alive connections evenly)."""

import os

from django.http import HttpResponse
from django.urls import path
from oauth2_provider.views import TokenView


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def ping(request):
    return HttpResponse(f"ok {os.getpid()}", content_type="text/plain")


urlpatterns = [
    path("o/token/", TokenView.as_view(), name="token"),
    path("healthz", healthz),
    path("bench/ping/", ping),
]
