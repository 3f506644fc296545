-- Each failed attempt's error, time, node and duration, newest last, at most 20 of them
-- (`ATTEMPT_HISTORY_LEN`), as JSON text. NULL until a job first fails; successes never write it.
ALTER TABLE jobs ADD COLUMN attempt_history TEXT
    CHECK (attempt_history IS NULL OR json_valid(attempt_history));
-- Failed and cancelled jobs, for bulk retries and the job browser's status filter.
CREATE INDEX IF NOT EXISTS jobs_unfinished_idx ON jobs (status, id)
    WHERE status IN ('failed', 'cancelled');
