"""The WSGI application of the OAuth benchmark server (``devkit.bench.oauth``): the production one
(``portal.wsgi``, same settings) with ``devkit.bench.urls`` as its URLconf, which adds ``/bench/ping/``."""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()
settings.ROOT_URLCONF = "devkit.bench.urls"  # read per request by Django's handler
