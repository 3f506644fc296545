-- The database feeds the workers: one policy rule for every insert path, time-ordered ids and
-- an enqueue function for any SQL client or trigger, and a notification per inserting
-- statement so that idle runners claim new work at once.

-- Each job type's policy, published by every node and `submit` from its configuration. A job
-- inserted without `max_attempts` takes its type's, or 3: the insert statements of the
-- library, the CLI and the API and the `add_job` functions below all apply this same rule.
CREATE TABLE IF NOT EXISTS job_types (
    type          text PRIMARY KEY,
    max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Functions keep the schema they were created in (`SET search_path FROM CURRENT`: the
-- migration runs with the search path set to skiplock's schema), so they find skiplock's
-- tables whatever the caller's search path is.

-- A UUID version 7 (48-bit Unix milliseconds, then random bits), the same shape the binary
-- generates, so ids from SQL sort with the others by creation time. PostgreSQL 15 has no
-- built-in. gen_random_uuid() is version 4; setting bits 52 and 53 makes the version 7.
CREATE OR REPLACE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE
    SET search_path FROM CURRENT AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- Enqueue one job. Any client or trigger can call it; it notifies the runners (through the
-- insert trigger below). `max_attempts` NULL takes the type's policy.
CREATE OR REPLACE FUNCTION add_job(
    job_type      text,
    target        jsonb DEFAULT '{}',
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL
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
    INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id)
    VALUES (new_id, job_type, target,
            COALESCE(add_job.max_attempts,
                     (SELECT t.max_attempts FROM job_types t WHERE t.type = job_type), 3),
            COALESCE(add_job.run_at, now()), COALESCE(add_job.priority, 0), add_job.batch_id);
    RETURN new_id;
END $$;

-- Enqueue many jobs of one type in one statement (one notification): one per target.
CREATE OR REPLACE FUNCTION add_jobs(
    job_type      text,
    targets       jsonb[],
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL
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
    RETURN QUERY
    INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id)
    SELECT uuid_v7(), job_type, t.target,
           COALESCE(add_jobs.max_attempts,
                    (SELECT p.max_attempts FROM job_types p WHERE p.type = job_type), 3),
           COALESCE(add_jobs.run_at, now()), COALESCE(add_jobs.priority, 0), add_jobs.batch_id
    FROM unnest(targets) WITH ORDINALITY AS t(target, n)
    ORDER BY t.n
    RETURNING id;
END $$;

-- One notification per inserting statement, on the channel named for the schema. The payload
-- is the earliest run_at of the statement's jobs in Unix milliseconds, so a runner can wake
-- when a scheduled job comes due. Notifications are sent at commit, and only then.
CREATE OR REPLACE FUNCTION notify_new_jobs() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
DECLARE
    first_due timestamptz;
BEGIN
    SELECT min(n.run_at) INTO first_due FROM new_jobs n WHERE n.status = 'pending';
    IF first_due IS NOT NULL THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA,
                          floor(extract(epoch FROM first_due) * 1000)::bigint::text);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS jobs_notify ON jobs;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_new_jobs();
