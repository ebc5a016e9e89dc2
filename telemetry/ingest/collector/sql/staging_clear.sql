-- Empty at a commit, but a caller's outer transaction (a test, a script) can span several
-- batches: rows of an earlier one, since trimmed, would be stored again.
DELETE FROM reading_staging
