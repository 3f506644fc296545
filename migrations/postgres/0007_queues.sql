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

-- `add_job` and `add_jobs` take an optional queue (the last argument, so every older call,
-- positional or named, still means what it meant). A function's argument list cannot be
-- changed in place, and an overload with one more defaulted argument would make old calls
-- ambiguous, so the old ones go first.
DROP FUNCTION IF EXISTS add_job(text, jsonb, timestamptz, smallint, integer, uuid);
DROP FUNCTION IF EXISTS add_jobs(text, jsonb[], timestamptz, smallint, integer, uuid);

CREATE OR REPLACE FUNCTION add_job(
    job_type      text,
    target        jsonb DEFAULT '{}',
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL,
    queue         text DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT AS $$
DECLARE
    new_id uuid := uuid_v7();
BEGIN
    IF job_type IS NULL OR job_type !~ '^[A-Za-z0-9_.:-]{1,200}$' THEN
        RAISE EXCEPTION 'invalid job type %: ASCII letters, digits, _ - . : (at most 200)', job_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target IS NULL THEN
        RAISE EXCEPTION 'target must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF add_job.queue IS NOT NULL AND add_job.queue !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid queue %: ASCII letters, digits, _ - . (at most 64)',
            left(add_job.queue, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, queue)
    VALUES (new_id, job_type, target,
            COALESCE(add_job.max_attempts,
                     (SELECT t.max_attempts FROM job_types t WHERE t.type = job_type), 3),
            COALESCE(add_job.run_at, now()), COALESCE(add_job.priority, 0), add_job.batch_id,
            COALESCE(add_job.queue,
                     (SELECT t.queue FROM job_types t WHERE t.type = job_type), 'default'));
    RETURN new_id;
END $$;

CREATE OR REPLACE FUNCTION add_jobs(
    job_type      text,
    targets       jsonb[],
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL,
    queue         text DEFAULT NULL
) RETURNS SETOF uuid LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT AS $$
BEGIN
    IF job_type IS NULL OR job_type !~ '^[A-Za-z0-9_.:-]{1,200}$' THEN
        RAISE EXCEPTION 'invalid job type %: ASCII letters, digits, _ - . : (at most 200)', job_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF targets IS NULL OR array_position(targets, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'targets must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF add_jobs.queue IS NOT NULL AND add_jobs.queue !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid queue %: ASCII letters, digits, _ - . (at most 64)',
            left(add_jobs.queue, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, queue)
    SELECT uuid_v7(), job_type, t.target,
           COALESCE(add_jobs.max_attempts,
                    (SELECT p.max_attempts FROM job_types p WHERE p.type = job_type), 3),
           COALESCE(add_jobs.run_at, now()), COALESCE(add_jobs.priority, 0), add_jobs.batch_id,
           COALESCE(add_jobs.queue,
                    (SELECT p.queue FROM job_types p WHERE p.type = job_type), 'default')
    FROM unnest(targets) WITH ORDINALITY AS t(target, n)
    ORDER BY t.n
    RETURNING id;
END $$;
