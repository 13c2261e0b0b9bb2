"""The WSGI application of the django-oauth-toolkit baseline server."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devkit.bench.dot_baseline.settings")
application = get_wsgi_application()
