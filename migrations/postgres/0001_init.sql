-- skiplock's tables. `{s}` is the configured schema, validated as a plain identifier.
CREATE TABLE IF NOT EXISTS {s}.batches (
    id          uuid PRIMARY KEY,
    name        text,
    type        text NOT NULL,
    total       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {s}.jobs (
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
CREATE INDEX IF NOT EXISTS jobs_due_idx ON {s}.jobs (priority DESC, run_at, id)
    WHERE status = 'pending';
-- Batch progress and listing by batch.
CREATE INDEX IF NOT EXISTS jobs_batch_idx ON {s}.jobs (batch_id) WHERE batch_id IS NOT NULL;
-- Pruning and recent throughput.
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON {s}.jobs (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {s}.nodes (
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
