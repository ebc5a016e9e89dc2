"""The collector: the Celery task that stores batches in PostgreSQL, and its liveness heartbeat."""
