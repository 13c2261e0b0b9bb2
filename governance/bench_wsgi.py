"""The WSGI application of the OAuth benchmark server (``governance.oauth_benchmarks``): the production one
(``portal.wsgi``, same settings) with ``governance.bench_urls`` as its URLconf, which adds ``/bench/ping/``."""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()
settings.ROOT_URLCONF = "governance.bench_urls"  # read per request by Django's handler
