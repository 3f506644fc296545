-- Named queues and node specialisation (see the PostgreSQL migration of the same number).
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
-- The due index led by the queue: a claim names one queue and reads only its head.
CREATE INDEX IF NOT EXISTS jobs_queue_due_idx ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';
DROP INDEX IF EXISTS jobs_due_idx;
-- A type's queue from its `[types.X]` table; NULL: `default`.
ALTER TABLE job_types ADD COLUMN queue TEXT;
-- What each node can run: the queues it serves (JSON object, name to runner count) and the
-- job types it has processors for (JSON array).
ALTER TABLE nodes ADD COLUMN queues TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(queues));
ALTER TABLE nodes ADD COLUMN types TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(types));
