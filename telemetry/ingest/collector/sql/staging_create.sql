-- The batch's readings on their way in, one table per session, emptied at each commit.
CREATE TEMP TABLE IF NOT EXISTS reading_staging
    (gpu_id integer, ts_us bigint, label_set_id integer, vals double precision[]) ON COMMIT DELETE ROWS
