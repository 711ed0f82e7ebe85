"""Django settings: everything from the environment, with embedded defaults when unset.

Unset DATABASE_URL means a SQLite file in the data folder; unset REDIS_URL means the private
Redis that `make run` starts (its address is kept in the data folder while it runs).
README.md has the table of every variable.
"""

import os
from datetime import timedelta
from pathlib import Path

from kombu import Queue

from wiring.embedded_redis import running_url
from wiring.environment import Configuration, positive, timezone_name

BASE_DIR = Path(__file__).resolve().parent.parent

# Every file a process of the product creates (the SQLite database and its -wal and -shm files,
# the generated secret key, the embedded Redis's files in DATA_DIR) is its owner's alone.
os.umask(0o077)

config = Configuration()
env = config.env

DATA_DIR = config.writable_folder("DATA_DIR", BASE_DIR / "data")
DEBUG = env.bool("DEBUG", False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])
HTTPS = env.bool("HTTPS", False)
TIME_ZONE = env.str("TIME_ZONE", "UTC", validate=timezone_name)
LOG_LEVEL = env.log_level("LOG_LEVEL", "INFO")
_database = config.database("DATABASE_URL")
_redis_url = config.redis_url("REDIS_URL")
EMAIL_HOST = env.str("EMAIL_HOST", "")
EMAIL_PORT = env.int("EMAIL_PORT", 25, validate=positive)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "scheduler@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
_task_time_limit = env.int("TASK_TIME_LIMIT", 30 * 60, validate=positive)
_task_soft_time_limit = env.int("TASK_SOFT_TIME_LIMIT", 25 * 60, validate=positive)
_visibility_timeout = env.int("BROKER_VISIBILITY_TIMEOUT", 60 * 60, validate=positive)
_worker_concurrency = env.int("WORKER_CONCURRENCY", None, validate=positive)
# Scraping: the contact in the fetcher's User-Agent, so a site's owner can reach whoever runs
# it; networks the gate may reach although it refuses them (for a source on your own network:
# e.g. 10.0.3.0/24; never a cloud metadata address).
SCRAPER_CONTACT = env.str("SCRAPER_CONTACT", "") or DEFAULT_FROM_EMAIL
OUTBOUND_ALLOWED_NETWORKS = config.outbound_networks("OUTBOUND_ALLOWED_NETWORKS")
OUTBOUND_HOSTS = config.outbound_hosts("OUTBOUND_HOSTS")
# Politeness: the least time between two requests to one host by all workers together (a
# source's own minimum delay or the host's Crawl-delay may make it longer), and how many
# requests to one host may be in flight at once.
SCRAPER_HOST_INTERVAL_SECONDS = env.float("SCRAPER_HOST_INTERVAL_SECONDS", 1.0, validate=positive)
SCRAPER_HOST_CONCURRENCY = env.int("SCRAPER_HOST_CONCURRENCY", 2, validate=positive)
# Monitoring: who is alerted when a schedule without alert settings of its own, beat or the
# workers change health; the address alerts link to; the token /metrics asks for.
ALERT_EMAILS = config.email_list("ALERT_EMAILS")
# Ports besides 80 and 443 that webhooks may use (a source allows its own port on its page).
WEBHOOK_ALLOWED_PORTS = tuple(env.list("WEBHOOK_ALLOWED_PORTS", [], subcast=int) or [])
ALERT_WEBHOOK_URL = config.outbound_url("ALERT_WEBHOOK_URL", ports=WEBHOOK_ALLOWED_PORTS,
                                        allowed=OUTBOUND_ALLOWED_NETWORKS)
SITE_URL = env.str("SITE_URL", "").rstrip("/")
METRICS_TOKEN = env.str("METRICS_TOKEN", "")
# What a report's SQL section keeps (reports.result_budget): each value at most REPORT_CELL_BYTES
# (the email shows 200 characters of it; 10 KB keeps any readable text whole in the CSV), and
# rows while their values fit REPORT_SECTION_BYTES (a section may set its own): 2 MB keeps the
# section's CSV well inside the 5 MB attachment limit and far above a usual 10,000-row result.
REPORT_CELL_BYTES = env.int("REPORT_CELL_BYTES", 10_000, validate=positive)
REPORT_SECTION_BYTES = env.int("REPORT_SECTION_BYTES", 2_000_000, validate=positive)
# The shortest interval a schedule may have, in the form and in beat.
MIN_SCHEDULE_PERIOD_SECONDS = env.float("MIN_SCHEDULE_PERIOD_SECONDS", 1.0, validate=positive)
# A beat or a worker silent for this long counts as stopped (the home page, health, alerts).
BEAT_STALE_SECONDS = env.int("BEAT_STALE_SECONDS", 60, validate=positive)
WORKER_STALE_SECONDS = env.int("WORKER_STALE_SECONDS", 90, validate=positive)
# How long a killed worker's run holds its schedule (renewed every third of it while it runs).
RUN_LEASE_SECONDS = env.int("RUN_LEASE_SECONDS", 60, validate=positive)
# How often beat reads the broker for sent runs whose message it lost (scheduler.recover).
LOST_MESSAGE_CHECK_SECONDS = env.int("LOST_MESSAGE_CHECK_SECONDS", 15, validate=positive)
# The first wait before a report email is tried again (each next wait doubles it: 30+60+120+240 s
# outlast greylisting's five minutes); the fault suite shortens it (reports.delivery).
MAIL_RETRY_BASE_SECONDS = env.float("MAIL_RETRY_BASE_SECONDS", 30.0, validate=positive)
# Where gunicorn listens (gunicorn.conf.py) and where `make run` says the admin is.
WEB_BIND = config.host_and_port("WEB_BIND", "127.0.0.1:8000")
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", 2, validate=positive)
SITE_URL = SITE_URL or f"http://{WEB_BIND}"
# The staff login `make run` makes sure of; with no password a generated one is printed once.
ADMIN_USERNAME = env.str("ADMIN_USERNAME", "admin")
ADMIN_EMAIL = env.str("ADMIN_EMAIL", "admin@localhost")
ADMIN_PASSWORD = env.str("ADMIN_PASSWORD", "") or None
# The login form: a user name is refused from an address after this many failed logins, until
# this many minutes pass without another attempt from there (django-axes, configured below).
# A team's own Django apps (their tasks are scheduled like the product's) and the management
# commands a schedule may run (jobs.run_command).
EXTRA_APPS = config.importable_apps("EXTRA_APPS")
JOB_COMMANDS = tuple(env.list("JOB_COMMANDS", ["cleanup", "send_report", "scrape"]))
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5, validate=positive)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", 15, validate=positive)

if None not in (_task_time_limit, _task_soft_time_limit, _visibility_timeout):
    if _task_soft_time_limit >= _task_time_limit:
        config.problem(
            "TASK_SOFT_TIME_LIMIT", "must be less than TASK_TIME_LIMIT, so a task can clean up before it is killed"
        )
    if _visibility_timeout <= _task_time_limit:
        # Redis hands an unacknowledged message to another worker after this timeout; if it
        # were shorter than a task may run, long tasks would run twice.
        config.problem("BROKER_VISIBILITY_TIMEOUT", "must be longer than TASK_TIME_LIMIT, or long tasks run twice")

if DATA_DIR is not None:
    SECRET_KEY = config.secret_key("SECRET_KEY", DATA_DIR)

config.seal()

INSTALLED_APPS = [
    # First, so their admin templates (the system's status on the admin index) override the admin's.
    "monitoring",
    "scheduler",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "shared",
    "cleanup",
    "scraping",
    "reports",
    "jobs",
    *EXTRA_APPS,
    # Login throttling; its attempts are under Axes in the admin.
    "axes",
    # The composition root's commands (prepare and launch) and the login's lockout page.
    "wiring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from gunicorn, so no separate web server is needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a login its backend refused into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "wiring.urls"
WSGI_APPLICATION = "wiring.wsgi.application"

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

if _database is None:
    _database = {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"}
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one file at once. WAL lets readers go on during a write;
    # busy_timeout waits for the lock instead of failing; IMMEDIATE takes the write lock at
    # the start of a transaction, which avoids the deadlock-then-"database is locked" that
    # upgrading a read lock causes (WAL alone made lock errors worse). synchronous=NORMAL is
    # safe with WAL (no corruption on power loss; the last commits may be lost) and spares an
    # fsync per commit, which many short transactions (batched cleanup) would otherwise pay.
    _database["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    _database["CONN_MAX_AGE"] = 0
    # A file, not memory, so the worker and beat processes of end-to-end tests share it.
    _database["TEST"] = {"NAME": str(Path(_database["NAME"]).with_name("test-db.sqlite3"))}
elif _database["ENGINE"] == "django.db.backends.postgresql":
    # A database host that went away answers nothing: without a timeout a connection attempt
    # (a health check, a worker's ledger write) waits for TCP's own, minutes.
    _database.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The throttle first: it refuses a locked-out login before a password is checked.
AUTHENTICATION_BACKENDS = [
    "wiring.login_lockout.LoginThrottle",
    "django.contrib.auth.backends.ModelBackend",
]
# https://django-axes.readthedocs.io/en/latest/4_configuration.html
# By the pair, so a guesser neither locks a user out everywhere (by name alone) nor locks out
# everyone behind one address (by address alone).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
# A person who mistyped a few times and then got in starts again from zero.
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "wiring.login_lockout.lockout_response"
# Left off: the expiration rows would be children of the attempts, which the retention engine
# deletes with one raw DELETE (no Django cascade), and the cool-off already ends a lockout.
AXES_USE_ATTEMPT_EXPIRATION = False
# Its start-up banner would open the output of every command.
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Error pages and mails (DEBUG or not) never show a secret: wiring/error_reports.py.
DEFAULT_EXCEPTION_REPORTER_FILTER = "wiring.error_reports.SecretsFilter"

# Email: with no EMAIL_HOST, messages are printed to the worker's log instead of being sent.
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)

# Behind TLS (HTTPS=true): secure cookies, redirect to https, HSTS. Off by default so the
# embedded set-up works on http://127.0.0.1:8000.
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"}},
    # The level is on the handler too: Django's own loggers set theirs and propagate here.
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "level": LOG_LEVEL}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# --- Celery (read by wiring/celery.py with namespace="CELERY") ---------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html

# The broker: the environment's Redis, else the embedded one `make run` started.
CELERY_BROKER_URL = _redis_url or running_url(DATA_DIR) or "redis://127.0.0.1:6379/0"
# Keep retrying the broker at start-up and forever after, logging each attempt with the URL.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Celery's consumer, trying a lost broker again every second instead of backing off to 30 s.
CELERY_WORKER_CONSUMER = "scheduler.worker_consumer:Consumer"
# A task running when the broker goes away runs to its end (its acknowledgement goes through
# once Redis is back; if not, the message comes back and the run's lease keeps it from running
# twice) rather than being cancelled and started over. Celery 6 is to change the default.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# visibility_timeout: an unacknowledged message goes back to the queue after this long, which
# is how a killed worker's task is delivered again; it must outlast the hard time limit.
# The restore sweep runs often enough that redelivery waits on the timeout, not on the sweep.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _visibility_timeout,
    "unacked_restore_interval": max(1, min(10, _visibility_timeout // 10)),
    "unacked_restore_throttle": 1,
}
# JSON only: pickle would let anyone who can write to Redis run code on the workers.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
# One queue per job family, so a slow scrape never delays a report; unrouted tasks use default.
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "reports", "cleanup", "scraping")]
CELERY_TASK_ROUTES = {
    "reports.*": {"queue": "reports"},
    "cleanup.*": {"queue": "cleanup"},
    "scraping.*": {"queue": "scraping"},
    # An HTTP call waits on another host, as a fetch does.
    "jobs.http_call": {"queue": "scraping"},
}
# Acknowledge after the task ran, and re-queue it if the worker process dies mid-task, so a
# killed worker's task is delivered again instead of being lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# With late acks a worker should hold only the task it runs, not a backlog others could take.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Soft limit raises SoftTimeLimitExceeded so the task can record its failure; hard limit kills.
CELERY_TASK_SOFT_TIME_LIMIT = _task_soft_time_limit
CELERY_TASK_TIME_LIMIT = _task_time_limit
CELERY_WORKER_CONCURRENCY = _worker_concurrency
# Results go to the database (django-celery-results) for review in the admin.
CELERY_RESULT_BACKEND = "django-db"
# Extended results fill task_name, periodic_task_name, worker, args; without it they stay empty.
CELERY_RESULT_EXTENDED = True
# No STARTED result: the run ledger records when each run began. Celery writes that state before
# the task's own code, outside its error handling, so with the database down the delivery failed
# and was acknowledged there, and its run stayed "sent" (a fault test found it); it was also a
# database write per task for nothing the ledger does not show.
CELERY_TASK_TRACK_STARTED = False
# Celery closes the database connections around every task unless told it may reuse them for
# this many; scheduler.worker_connections closes them as Django does for a request instead
# (CONN_MAX_AGE, health checks).
CELERY_DB_REUSE_MAX = 1_000_000
# A database hiccup while storing a result is retried instead of losing the result.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
# Results expire by the cleanup engine's "task_results" retention policy (30 days, newest 10
# per schedule kept; edit it in the admin), in short batches. None turns off Celery's own
# backend_cleanup, which deletes every expired result in one long statement.
CELERY_RESULT_EXPIRES = None
# Events let monitoring tools see tasks as they are sent, start and finish.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TIMEZONE = TIME_ZONE
# Beat reads schedules from the database through our scheduler class, so a plain
# `celery -A scheduler beat` needs no -S.
CELERY_BEAT_SCHEDULER = "scheduler.beat:DatabaseScheduler"
