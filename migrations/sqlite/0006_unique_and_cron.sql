-- Unique jobs and cron (see the PostgreSQL migration of the same number for the design).
-- SQLite serialises writers, so the check of a key and the insert of its job, done in one
-- write transaction, cannot race; the partial unique index is still the constraint.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_open_idx ON jobs (type, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');

CREATE TABLE IF NOT EXISTS unique_keys (
    type        TEXT NOT NULL,
    unique_key  TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (type, unique_key)
);

CREATE TRIGGER IF NOT EXISTS jobs_forget_unique_key AFTER DELETE ON jobs
    WHEN OLD.unique_key IS NOT NULL
BEGIN
    DELETE FROM unique_keys
    WHERE type = OLD.type AND unique_key = OLD.unique_key AND job_id = OLD.id;
END;

ALTER TABLE job_types ADD COLUMN unique_fields TEXT CHECK (unique_fields IS NULL OR json_valid(unique_fields));
ALTER TABLE job_types ADD COLUMN unique_for_ms INTEGER;

CREATE TABLE IF NOT EXISTS cron (
    name        TEXT PRIMARY KEY,
    last_tick   TEXT NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
