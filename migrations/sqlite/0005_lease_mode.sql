-- Lease mode (see the PostgreSQL migration of the same number). SQLite cannot change a CHECK
-- constraint in place, so the jobs table is rebuilt with `running` allowed and a lease
-- deadline, its rows copied, and its indexes made again.
CREATE TABLE jobs_new (
    id            TEXT PRIMARY KEY,
    type          TEXT NOT NULL,
    target        TEXT NOT NULL CHECK (json_valid(target)),
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    priority      INTEGER NOT NULL DEFAULT 0,
    batch_id      TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at   TEXT,
    node_id       TEXT,
    attempt_history TEXT CHECK (attempt_history IS NULL OR json_valid(attempt_history)),
    lease_until   TEXT
);

INSERT INTO jobs_new (id, type, target, status, attempts, max_attempts, run_at, priority,
                      batch_id, last_error, created_at, updated_at, finished_at, node_id,
                      attempt_history)
SELECT id, type, target, status, attempts, max_attempts, run_at, priority,
       batch_id, last_error, created_at, updated_at, finished_at, node_id, attempt_history
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX IF NOT EXISTS jobs_due_idx ON jobs (priority DESC, run_at, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS jobs_batch_idx ON jobs (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON jobs (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_unfinished_idx ON jobs (status, id)
    WHERE status IN ('failed', 'cancelled');
CREATE INDEX IF NOT EXISTS jobs_lease_idx ON jobs (lease_until) WHERE status = 'running';
