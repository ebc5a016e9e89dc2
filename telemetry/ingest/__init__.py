"""Ingest: sources of samples, the streamer that batches and publishes them, and the collector."""
