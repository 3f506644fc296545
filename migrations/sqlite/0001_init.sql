-- skiplock's tables in a SQLite file. The same tables and columns as PostgreSQL, with
-- SQLite's types:
-- * UUIDs are TEXT in their canonical lowercase hyphenated form. For UUID v7 that text sorts
--   exactly like the 128-bit value, so `ORDER BY id` and the `id > cursor` pagination agree
--   with PostgreSQL's uuid ordering.
-- * Timestamps are TEXT, UTC, fixed width `YYYY-MM-DD HH:MM:SS.SSS` (SQLite's own format, as
--   `strftime('%Y-%m-%d %H:%M:%f', 'now')` writes it), so comparing the text compares the
--   instants and SQLite's date functions can do arithmetic on them.
-- * JSON (targets, held job lists) is TEXT checked with json_valid.
CREATE TABLE IF NOT EXISTS batches (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    type        TEXT NOT NULL,
    total       INTEGER NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    type          TEXT NOT NULL,
    target        TEXT NOT NULL CHECK (json_valid(target)),
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    priority      INTEGER NOT NULL DEFAULT 0,
    batch_id      TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at   TEXT,
    node_id       TEXT
);

-- The reconciler's "next pending, due jobs" lookup. Partial, so it stays as small as the
-- backlog however many finished rows the table holds.
CREATE INDEX IF NOT EXISTS jobs_due_idx ON jobs (priority DESC, run_at, id)
    WHERE status = 'pending';
-- Batch progress and listing by batch.
CREATE INDEX IF NOT EXISTS jobs_batch_idx ON jobs (batch_id) WHERE batch_id IS NOT NULL;
-- Pruning and recent throughput.
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON jobs (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS nodes (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    in_flight    INTEGER NOT NULL DEFAULT 0,
    processed    INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    held         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(held)),
    started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    last_seen    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
