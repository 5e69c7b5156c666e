"""Settings for Postman Email, read once from the environment.

With no environment at all this is the embedded default: SQLite under var/, the django-q2 ORM
broker and SMTP delivery to the development inbox on 127.0.0.1:1025. Production sets DEBUG=false
and must then provide SECRET_KEY and API_KEY_PEPPER (see README.md → Configuration).
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
(VAR_DIR / "static").mkdir(exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)


def _verbatim(name: str) -> str:
    """A secret exactly as set. django-environ reads a value that starts with "$" as the name of
    another variable to read instead, and a generated secret can start with one (Django's
    ``get_random_secret_key`` does once in fifty keys)."""
    return os.environ.get(name, "")


def _secret(name: str, dev_default: str) -> str:
    value = _verbatim(name)
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is false")
    return dev_default


SECRET_KEY = _secret("SECRET_KEY", "dev-only-insecure-secret-key-do-not-use-in-production")
# API key digests use their own key so that rotating SECRET_KEY (sessions, signed links)
# does not invalidate every agency's API keys.
API_KEY_PEPPER = _secret("API_KEY_PEPPER", "dev-only-api-key-pepper")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Postman <info@mail.postman.gov.sg>")
# Addresses that count as "the default sender" in the send API besides DEFAULT_FROM_EMAIL's.
DEFAULT_FROM_ALIASES = env.list("DEFAULT_FROM_ALIASES", default=["donotreply@mail.postman.gov.sg"])
SIGNUP_DOMAINS = env.list("SIGNUP_DOMAINS", default=[".gov.sg"])
CALLBACK_SECRET = _verbatim("CALLBACK_SECRET")
# Sender domains (docs/senders.md): the resolver for DNS checks ("host" or "host:port"; empty:
# /etc/resolv.conf), the SPF include agencies publish, and the keys that encrypt DKIM private
# keys at rest (empty: derived from SECRET_KEY and SECRET_KEY_FALLBACKS).
DNS_NAMESERVERS = env.list("DNS_NAMESERVERS", default=[])
DNS_TIMEOUT = env.float("DNS_TIMEOUT", default=5.0)
SPF_INCLUDE = env.str("SPF_INCLUDE", default="_spf.mail.postman.gov.sg")
DKIM_KEY_ENCRYPTION_KEYS = [k for k in _verbatim("DKIM_KEY_ENCRYPTION_KEYS").split(",") if k]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "accounts",
    "apikeys",
    "emails",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "postman_email.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "postman_email.urls"
WSGI_APPLICATION = "postman_email.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and inbox share the file: wait for locks instead of failing, take the write
    # lock up front (no deadlocking lock upgrades) and let readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # One "SELECT 1" per request before a reused connection (docs/performance.md has its cost);
    # it turns a connection lost to a database restart into a reconnect instead of a 500.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
    # Parameters sent apart from the SQL, and statements a connection runs five times prepared:
    # PostgreSQL then skips parsing and planning them on every request (docs/performance.md).
    # Turn off behind a connection pooler that cannot keep prepared statements (PgBouncer in
    # transaction mode before 1.21, or without max_prepared_statements).
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=5
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

WORKER_TASK_TIMEOUT = env.int("WORKER_TASK_TIMEOUT", default=90)
Q_CLUSTER = {
    # Clusters with the same name share one queue (on Redis: one list per name and database).
    "name": env.str("Q_CLUSTER_NAME", default="postman"),
    "workers": env.int("WORKER_CONCURRENCY", default=2),
    "timeout": WORKER_TASK_TIMEOUT,
    # Longer than the timeout: a task is handed out again only when its worker is gone.
    "retry": WORKER_TASK_TIMEOUT + 30,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    # Successful task results are not stored: an email's outcome lives on its own row, and with
    # a limit django-q2 re-reads up to that many stored results for every task it finishes, which
    # doubled the worker's CPU per email (docs/performance.md). Failed tasks are still stored.
    "save_limit": -1,
    "label": "Worker",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = env.float("WORKER_POLL_SECONDS", default=0.1)

# Outgoing mail: every accepted email is handed to this SMTP relay.
vars().update(env.email_url("EMAIL_URL", default="smtp://127.0.0.1:1025"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))},
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Send requests are at most 10 MiB outside multipart (SPEC §4); attachments stream to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LANGUAGE_CODE = "en"
TIME_ZONE = "Asia/Singapore"
USE_I18N = False
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["postman_email.renderers.ApiJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "emails.api.parsers.BoundedJSONParser",
        "emails.api.parsers.BoundedFormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "emails.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Postman Email API",
    "DESCRIPTION": "Send transactional emails and track their delivery. Compatible with the "
    "PostmanSG transactional email API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No call to swagger.io's online validator: the docs must work on a closed network.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/v1",
}

# Delivery tuning (see docs/delivery.md).
DELIVERY_LEASE_SECONDS = env.int("DELIVERY_LEASE_SECONDS", default=300)
# How long transient hand-off failures are retried before the email becomes a soft bounce.
DELIVERY_RETRY_SECONDS = env.int("DELIVERY_RETRY_SECONDS", default=24 * 60 * 60)
# The first retry delay; each further one doubles it (with jitter), up to an hour.
DELIVERY_RETRY_BASE_SECONDS = env.int("DELIVERY_RETRY_BASE_SECONDS", default=60)
# How many due emails one worker task claims and hands off over its relay connection.
DELIVERY_BATCH_SIZE = env.int("DELIVERY_BATCH_SIZE", default=25)
if DELIVERY_LEASE_SECONDS <= WORKER_TASK_TIMEOUT:
    # A lease that can end while its task still runs would let a second worker send the email.
    raise ImproperlyConfigured("DELIVERY_LEASE_SECONDS must be longer than WORKER_TASK_TIMEOUT")

# Provider callbacks: Amazon SES events through SNS (docs/callbacks.md). The signing certificate
# and the subscription confirmation are fetched only from https URLs whose host matches this.
SNS_CERT_HOST_PATTERN = env.str(
    "SNS_CERT_HOST_PATTERN", default=r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
)
# A CA bundle (PEM file) to trust for those fetches instead of the system's; empty = the system's.
SNS_CERT_CA_BUNDLE = env.str("SNS_CERT_CA_BUNDLE", default="")
# The SNS topics allowed to post callbacks; empty = any topic (Basic auth still applies).
SNS_TOPIC_ARNS = env.list("SNS_TOPIC_ARNS", default=[])

# Security. HTTPS_ONLY defaults to on in production; switch it off only on a private network or
# behind a proxy that terminates TLS without forwarding the scheme.
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=not DEBUG)
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS_ONLY
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = 31536000 if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = HTTPS_ONLY
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SESSION_COOKIE_HTTPONLY = True
# Portal sessions last a working day; a login code is cheap to ask for again.
SESSION_COOKIE_AGE = 12 * 60 * 60
# Per-IP login throttling reads the client address from X-Forwarded-For (its last entry, the one
# the proxy in front added) only when that proxy is trusted to set it; else REMOTE_ADDR.
TRUST_X_FORWARDED_FOR = env.bool("TRUST_X_FORWARDED_FOR", default=False)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Strict"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
