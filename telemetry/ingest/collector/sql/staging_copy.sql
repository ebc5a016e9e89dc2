COPY reading_staging (gpu_id, ts_us, label_set_id, vals) FROM STDIN
