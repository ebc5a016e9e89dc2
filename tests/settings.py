"""Settings for the test suite: the real PostgreSQL and RabbitMQ on this machine, a queue of the tests' own."""
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/telemetry")
os.environ.setdefault("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
# A queue of their own, so tests never consume a local `make run`'s batches (or the reverse).
os.environ.setdefault("CELERY_INGEST_QUEUE", "telemetry.ingest.test")
os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret")
os.environ.setdefault("DEBUG", "false")

from config.settings import *  # noqa: E402,F403
