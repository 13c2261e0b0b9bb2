"""Settings of the django-oauth-toolkit baseline server: DOT's defaults, nothing else.

``DOT_BASELINE_DATABASE_URL`` names its own database (never the portal's). ``CONN_MAX_AGE`` and the proxy header
match the portal's production settings, so both servers keep their database connections and see HTTPS alike.
"""

import os

import environ

SECRET_KEY = os.environ.get("DOT_BASELINE_SECRET_KEY", "dot-baseline-not-secret")  # noqa: S105 (bench only)
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "oauth2_provider"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "devkit.bench.dot_baseline.urls"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # oauthlib refuses a token request over plain http
DATABASES = {"default": environ.Env.db_url_config(os.environ["DOT_BASELINE_DATABASE_URL"])}
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
LOGGING_CONFIG = None
