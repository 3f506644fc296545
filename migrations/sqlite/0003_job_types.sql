-- Each job type's policy, published by every node and `submit` from its configuration. A job
-- inserted without `max_attempts` takes its type's, or 3: every insert statement applies
-- this same rule.
CREATE TABLE IF NOT EXISTS job_types (
    type          TEXT PRIMARY KEY,
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
