-- skiplock's tables. Migrations run with `SET LOCAL search_path` set to the configured schema,
-- so names here are unqualified and land in that schema.
CREATE TABLE IF NOT EXISTS batches (
    id          uuid PRIMARY KEY,
    name        text,
    type        text NOT NULL,
    total       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS jobs (
    id            uuid PRIMARY KEY,
    type          text NOT NULL,
    target        jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at        timestamptz NOT NULL DEFAULT now(),
    priority      smallint NOT NULL DEFAULT 0,
    batch_id      uuid,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    node_id       text
);

-- The reconciler's "next pending, due jobs" lookup. Partial, so it stays as small as the
-- backlog however many finished rows the table holds.
CREATE INDEX IF NOT EXISTS jobs_due_idx ON jobs (priority DESC, run_at, id)
    WHERE status = 'pending';
-- Batch progress counts every job of a batch that has not succeeded; `succeeded` is the
-- batch's total minus those. Success is the hot path, and a succeeded row enters no index
-- but the primary key, so completing a job costs one index insertion instead of three.
CREATE INDEX IF NOT EXISTS jobs_batch_open_idx ON jobs (batch_id, status)
    WHERE batch_id IS NOT NULL AND status <> 'succeeded';
-- Pruning and recent throughput. BRIN: finished rows are appended roughly in finishing
-- order, and a BRIN index costs next to nothing to maintain on the completion path.
CREATE INDEX IF NOT EXISTS jobs_finished_brin ON jobs USING brin (finished_at);

CREATE TABLE IF NOT EXISTS nodes (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    concurrency  integer NOT NULL,
    in_flight    integer NOT NULL DEFAULT 0,
    processed    bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    held         uuid[] NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now()
);

-- What each worker slot is about to run, written (without waiting for fsync) just before its
-- chunk's transaction opens. A job that kills its worker within milliseconds never reaches a
-- heartbeat; this row survives the crash, so the job is still charged the attempt.
CREATE TABLE IF NOT EXISTS holds (
    slot        uuid PRIMARY KEY,
    node_id     text NOT NULL,
    ids         uuid[] NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS holds_node_idx ON holds (node_id);
