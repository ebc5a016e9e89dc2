"""The streamer: reads a source, batches its samples and publishes them. Needs no database."""
