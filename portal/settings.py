"""Settings for the Agent Identity Portal, read from the environment.

Embedded default (no environment at all): SQLite and a filesystem Celery broker under ``var/``.
``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis. ``DEBUG=0`` (the default) turns on
every production protection, so ``manage.py check --deploy`` is clean.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from portal.network import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost", "[::1]"]),
    PORTAL_BASE_URL=(str, "http://127.0.0.1:8000"),
    REDIS_URL=(str, ""),
    SECURE_SSL_REDIRECT=(bool, True),
    SECURE_HSTS_SECONDS=(int, 31536000),
    LOGIN_FAILURE_LIMIT=(int, 5),
    LOGIN_FAILURE_WINDOW_SECONDS=(int, 900),
    ORPHAN_GRACE_DAYS=(int, 30),
    SPONSOR_ATTESTATION_DAYS=(int, 180),
    SPONSOR_REMINDER_DAYS=(int, 14),
    SPONSOR_TRANSFER_DAYS=(int, 7),
    RETIRE_GRACE_DAYS=(int, 30),
    APPROVAL_REQUEST_TTL_DAYS=(int, 14),
    EXPIRY_REMINDER_DAYS=(list, [14, 1]),
    AGENT_IDENTITY_PUBLISHER_KINDS=(list, ["microsoft"]),
    CREDENTIAL_LIFETIME_DAYS=(int, 180),
    CREDENTIAL_ROTATION_OVERLAP_HOURS=(int, 24),
    CREDENTIAL_HASH_KEY=(str, ""),
    JOB_BATCH_SIZE=(int, 1000),
    JOB_BATCH_PAUSE_SECONDS=(float, 0.0),
    REVIEW_INACTIVE_DAYS=(int, 30),
    ACCESS_TOKEN_TTL=(int, 600),
    OAUTH_RATE_LIMIT_PER_CLIENT=(int, 600),
    OAUTH_RATE_LIMIT_PER_IP=(int, 6000),
    OAUTH_INTROSPECT_RATE_LIMIT=(int, 120000),
    OAUTH_FAILED_AUTH_RISK=(int, 5),
    OAUTH_FAILED_AUTH_LOCK=(int, 10),
    OAUTH_LOCK_SECONDS=(int, 900),
    RISK_BURST_PER_MINUTE=(int, 120),
    PORTAL_API_URL=(str, ""),
    RUN_TIME_LIMIT_SECONDS=(int, 300),
    RUN_EXECUTOR_TIMEOUT_SECONDS=(float, 10.0),
    TRUSTED_PROXIES=(list, []),
)
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _embedded_secret_key() -> str:
    """A random key kept in var/ so the embedded mode needs no configuration; production sets SECRET_KEY."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


DEBUG = env("DEBUG")
SECRET_KEY = env.str("SECRET_KEY", default="") or _embedded_secret_key()
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
PORTAL_BASE_URL = env("PORTAL_BASE_URL").rstrip("/")
CSRF_TRUSTED_ORIGINS = [PORTAL_BASE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "guardian",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "agents",
    "governance",
    "governance.approvals",
    "governance.access",
    "governance.reviews",
    "governance.conditional_access",
    "governance.signing",
    "governance.impact",  # before signin and runs: it reads what stops before they end it (its apps.py)
    "governance.signin",
    "governance.usage",
    "governance.risk",
    "governance.runs",
    "governance.oauth",
    "governance.replay",
    "devkit",
]

MIDDLEWARE = [
    # First: the machine endpoints (OAuth token, introspection, revocation) take a short chain of their own.
    "portal.middleware.MachineEndpointMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.CurrentWorkspaceMiddleware",
    # Innermost: a view that lost the database answers 503 before anything else sees the error (portal/unavailable.py).
    "portal.unavailable.DatabaseUnavailableMiddleware",
]

# URL names of the endpoints only agents and resource servers call, served by MachineEndpointMiddleware's short
# middleware chain (docs/design.md, "Machine endpoints").
MACHINE_ENDPOINTS = ["oauth-token", "oauth-introspect", "oauth-revoke"]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers wait for each other instead of failing with "database is locked" (web + worker share the file).
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A kept connection is tested before a request's first query, so one broken by a database restart or failover
    # is replaced at once instead of failing requests until it ages out (docs/design.md, "Faults").
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
CSRF_FAILURE_VIEW = "portal.views.csrf_failure"

# guardian: anonymous users get no object permissions, so no anonymous user row is needed.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# --- Redis / Celery ---------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
CELERY_BROKER_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Short timeouts: a Redis that does not answer costs a request half a second, not minutes (docs/design.md,
    # Faults). The cache falls back to this process's memory meanwhile (portal.cache).
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600, "socket_connect_timeout": 0.5}
    CACHES = {"default": {"BACKEND": "portal.cache.FailSoftRedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
else:
    for sub in ("broker", "processed", "control"):
        (CELERY_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost/"  # the host is unused; naming it keeps kombu from warning
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "broker"),
        "data_folder_out": str(CELERY_BROKER_DIR / "broker"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- REST API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first: DRF answers an anonymous call with the first class's challenge, 401 + WWW-Authenticate: Bearer.
    "DEFAULT_AUTHENTICATION_CLASSES": ["governance.signin.api.BearerTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api_permissions.ScopedAccess"],
    "DEFAULT_PARSER_CLASSES": ["portal.api_input.BoundedJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_PAGINATION_CLASS": "portal.api_input.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "portal.api_schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "portal.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Identity Portal API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "PARSER_WHITELIST": ["portal.api_input.BoundedJSONParser"],  # the API is documented as JSON (forms still parse)
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Operations grouped by what they act on, each with a one-line summary; the groups described (portal/api_schema.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "portal.api_schema.describe_tags"],
}

# --- Governance knobs (docs/design.md, Rules) ---------------------------------------------------------------------
LOGIN_FAILURE_LIMIT = env("LOGIN_FAILURE_LIMIT")
LOGIN_FAILURE_WINDOW = timedelta(seconds=env("LOGIN_FAILURE_WINDOW_SECONDS"))
ORPHAN_GRACE_DAYS = env("ORPHAN_GRACE_DAYS")
# R30 (docs/sponsorship.md): sponsors confirm again every SPONSOR_ATTESTATION_DAYS, are reminded
# SPONSOR_REMINDER_DAYS before; a transfer not accepted within SPONSOR_TRANSFER_DAYS is escalated to the owners.
SPONSOR_ATTESTATION_DAYS = env("SPONSOR_ATTESTATION_DAYS")
SPONSOR_REMINDER_DAYS = env("SPONSOR_REMINDER_DAYS")
SPONSOR_TRANSFER_DAYS = env("SPONSOR_TRANSFER_DAYS")
RETIRE_GRACE_DAYS = env("RETIRE_GRACE_DAYS")
APPROVAL_REQUEST_TTL_DAYS = env("APPROVAL_REQUEST_TTL_DAYS")
EXPIRY_REMINDER_DAYS = [int(d) for d in env("EXPIRY_REMINDER_DAYS")]
AGENT_IDENTITY_PUBLISHER_KINDS = env("AGENT_IDENTITY_PUBLISHER_KINDS")
CREDENTIAL_LIFETIME_DAYS = env("CREDENTIAL_LIFETIME_DAYS")
CREDENTIAL_ROTATION_OVERLAP_HOURS = env("CREDENTIAL_ROTATION_OVERLAP_HOURS")
#: R9: the most agents one bulk file may create (command, upload); a longer file is refused before anything is made.
BULK_MAX_ROWS = env.int("BULK_MAX_ROWS", default=10_000)
#: The sign-in log keeps this many days (docs/design.md, "The sign-in log at volume"): older days are dropped whole
#: (a partition a day on PostgreSQL; batched deletes on SQLite) by the ``maintain_sign_in_partitions`` job.
SIGNIN_RETENTION_DAYS = env.int("SIGNIN_RETENTION_DAYS", default=90)
#: A sign-in export larger than this runs as a background job whose file is downloaded once.
EXPORT_MAX_ROWS = env.int("EXPORT_MAX_ROWS", default=100_000)
#: Where those export files wait for their one download (deleted after it, or after ``EXPORT_FILE_HOURS``).
EXPORT_DIR = Path(env.str("EXPORT_DIR", default=str(VAR_DIR / "exports")))
EXPORT_FILE_HOURS = env.int("EXPORT_FILE_HOURS", default=24)
CREDENTIAL_HASH_KEY = env("CREDENTIAL_HASH_KEY")
JOB_BATCH_SIZE = env("JOB_BATCH_SIZE")
# The audit log's tree heads (docs/design.md, R23): an Ed25519 private key as base64 of its 32-byte seed, derived
# from SECRET_KEY when unset; the public keys of earlier signing keys (base64, comma-separated) stay trusted.
AUDIT_LOG_SIGNING_KEY = env.str("AUDIT_LOG_SIGNING_KEY", default="")
AUDIT_LOG_TRUSTED_KEYS = env.list("AUDIT_LOG_TRUSTED_KEYS", default=[])
AUDIT_SEQUENCE_BATCH = env.int("AUDIT_SEQUENCE_BATCH", default=10000)
JOB_BATCH_PAUSE_SECONDS = env("JOB_BATCH_PAUSE_SECONDS")
#: The usage rollup (docs/design.md, "Usage") integrates the sign-ins up to the highest id a run saw once that sight
#: is this old and no transaction of this database that began before it is still open.
USAGE_SETTLE_SECONDS = env.float("USAGE_SETTLE_SECONDS", default=5.0)
#: How many sign-in ids one statement of the rollup integrates (one transaction each).
USAGE_ROLLUP_BATCH = env.int("USAGE_ROLLUP_BATCH", default=250_000)
REVIEW_INACTIVE_DAYS = env("REVIEW_INACTIVE_DAYS")

# --- OAuth 2.0 for agents (R22): the token, introspection and revocation endpoints -------------------------------
ACCESS_TOKEN_TTL = env("ACCESS_TOKEN_TTL")  # seconds
OAUTH_RATE_LIMIT_PER_CLIENT = env("OAUTH_RATE_LIMIT_PER_CLIENT")  # requests per minute per client id
OAUTH_RATE_LIMIT_PER_IP = env("OAUTH_RATE_LIMIT_PER_IP")  # requests per minute per client IP
OAUTH_INTROSPECT_RATE_LIMIT = env("OAUTH_INTROSPECT_RATE_LIMIT")  # introspections per minute per server and per IP
OAUTH_FAILED_AUTH_RISK = env("OAUTH_FAILED_AUTH_RISK")  # failed client authentications (15 min) → risk detection
OAUTH_FAILED_AUTH_LOCK = env("OAUTH_FAILED_AUTH_LOCK")  # … → the client id is locked out
OAUTH_LOCK_SECONDS = env("OAUTH_LOCK_SECONDS")
RISK_BURST_PER_MINUTE = env("RISK_BURST_PER_MINUTE")  # token requests per minute that count as a burst

# --- OAuth 2.1 (R24-R27): signing keys, resource indicators, authorization code, client registration -------------
SIGNING_KEY_SECRET = env.str("SIGNING_KEY_SECRET", default="")  # derives the key that encrypts private keys
SIGNING_KEY_CACHE_SECONDS = env.int("SIGNING_KEY_CACHE_SECONDS", default=30)  # how long a process keeps keys
SIGNING_KEY_ROTATION_DAYS = env.int("SIGNING_KEY_ROTATION_DAYS", default=30)  # a new key this often
SIGNING_KEY_PUBLISH_SECONDS = env.int("SIGNING_KEY_PUBLISH_SECONDS", default=86400)  # published before it signs
REFRESH_TOKEN_TTL = env.int("REFRESH_TOKEN_TTL", default=30 * 86400)  # seconds
AUTHORIZATION_CODE_TTL = env.int("AUTHORIZATION_CODE_TTL", default=60)  # seconds
OAUTH_DYNAMIC_REGISTRATION = env.str("OAUTH_DYNAMIC_REGISTRATION", default="approval")  # approval | open | off
OAUTH_CIMD_ALLOWED_HOSTS = env.list("OAUTH_CIMD_ALLOWED_HOSTS", default=[])  # empty: any https host
OAUTH_ALLOW_LOOPBACK_HTTP = env.bool("OAUTH_ALLOW_LOOPBACK_HTTP", default=DEBUG)
OAUTH_REGISTRATION_WORKSPACE = env.str("OAUTH_REGISTRATION_WORKSPACE", default="")  # slug; empty: the first
OAUTH_REGISTRATION_RATE_PER_IP = env.int("OAUTH_REGISTRATION_RATE_PER_IP", default=20)  # registrations a minute
if OAUTH_DYNAMIC_REGISTRATION not in ("approval", "open", "off"):
    raise ImproperlyConfigured("OAUTH_DYNAMIC_REGISTRATION must be approval, open or off.")
# Agents without secrets (docs/oauth.md, "Agents without secrets"): key credentials' lifetime, how far ahead a
# client assertion may expire, how long an issuer's JWKS is kept, which hosts a key credential's jwks_uri may name.
KEY_CREDENTIAL_DAYS = env.int("KEY_CREDENTIAL_DAYS", default=365)
CLIENT_ASSERTION_MAX_SECONDS = env.int("CLIENT_ASSERTION_MAX_SECONDS", default=300)  # exp - now, exp - iat
FEDERATION_JWKS_CACHE_SECONDS = env.int("FEDERATION_JWKS_CACHE_SECONDS", default=300)
OAUTH_KEY_JWKS_ALLOWED_HOSTS = env.list("OAUTH_KEY_JWKS_ALLOWED_HOSTS", default=[])  # empty: any https host
# Runs (sessions and runs): where a run's API reads go (empty: the portal in-process), how long a run may take,
# how long an external executor has to accept a run request.
PORTAL_API_URL = env("PORTAL_API_URL")
RUN_TIME_LIMIT_SECONDS = env("RUN_TIME_LIMIT_SECONDS")
RUN_EXECUTOR_TIMEOUT_SECONDS = env("RUN_EXECUTOR_TIMEOUT_SECONDS")

# --- The client's address behind reverse proxies (portal/network.py) --------------------------------------------------
# Addresses or CIDR networks of the proxies in front of the portal; empty: the socket peer is the client.
TRUSTED_PROXIES = parse_trusted_proxies(env("TRUSTED_PROXIES"))

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")

# --- Four-eyes (docs/four-eyes.md) ------------------------------------------------------------------------------------
# Which kinds of change need a second administrator while Global Administrators have not chosen on the settings page:
# unset = each kind's own default (all on); a comma-separated list of kinds names exactly those (empty = none).
FOUR_EYES_DEFAULT_KINDS = env.list("FOUR_EYES_DEFAULT_KINDS", default=None)

# --- Security -----------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT")
    SECURE_HSTS_SECONDS = env("SECURE_HSTS_SECONDS")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SILENCED_SYSTEM_CHECKS: list[str] = []

# Content-Security-Policy (django-csp): scripts, styles, fonts and fetches from the portal's own origin only; no inline
# script or style, no eval, no plugins, no framing, forms post only here. A view that needs more would say so with
# csp.decorators.csp_update; none does (the API docs page is served without inline code). README, "Production".
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A refused request (403, 404) is logged on one line, without a traceback (portal/logfilters.py).
    "filters": {"client_errors_without_traceback": {"()": "portal.logfilters.ClientErrorsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"},
                "django.request": {"filters": ["client_errors_without_traceback"]}},
}
