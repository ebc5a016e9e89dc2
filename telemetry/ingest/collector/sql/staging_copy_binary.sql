-- The staging rows of a ColumnBatch (backfill's), in PostgreSQL's binary format (telemetry/ingest/columns.py).
COPY reading_staging (gpu_id, ts_us, label_set_id, vals) FROM STDIN (FORMAT BINARY)
