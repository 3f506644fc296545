-- Each failed attempt's error, time, node and duration, newest last, at most 20 of them
-- (`ATTEMPT_HISTORY_LEN`). NULL until a job first fails: a column without a default is added
-- without rewriting the table, and the success path never writes it.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS attempt_history jsonb;
-- Failed and cancelled jobs, for bulk retries and the job browser's status filter. Partial,
-- so succeeded rows (the many) never enter it and completing a job costs nothing more.
CREATE INDEX IF NOT EXISTS jobs_unfinished_idx ON jobs (status, id)
    WHERE status IN ('failed', 'cancelled');
