-- Named queues and node specialisation: every job waits in a named queue (`default` unless its
-- insert or its type's policy names another), and a node claims only jobs of the queues it
-- serves and the types it has processors for. The others stay pending for a node that can
-- run them.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS queue text NOT NULL DEFAULT 'default';

-- The due index, led by the queue. Every claim names one queue (`queue = $q`, then the same
-- order as before: priority DESC, run_at, id), so it starts at that queue's head and never
-- reads an entry of another queue however many wait there. It replaces `jobs_due_idx`: every
-- statement that read that one now names a queue.
CREATE INDEX IF NOT EXISTS jobs_queue_due_idx ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';
DROP INDEX IF EXISTS jobs_due_idx;

-- A type's queue, from `queue = "…"` in its `[types.X]` table: applied by every insert path
-- to a job that names no queue. NULL: `default`.
ALTER TABLE job_types ADD COLUMN IF NOT EXISTS queue text;

-- What each node can run, written with its heartbeat: the queues it serves (name to runner
-- count) and the job types it has processors for. The status report compares the pending
-- jobs against these to show jobs no live node can run.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS queues jsonb NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS types jsonb NOT NULL DEFAULT '[]';

-- `add_job` and `add_jobs` take an optional queue: created by 0012, with the unique keys of
-- 0006.
