-- Unique jobs and cron.
--
-- A job may carry a unique key (given by its submitter, or derived from its target by its
-- type's `unique` fields). At most one open job (pending, or running in lease mode) exists per
-- (type, key): the partial unique index below is the constraint, so it holds across nodes,
-- clients and races. A duplicate insert returns the open job's id instead.
--
-- A window (`unique_for`) also counts finished jobs created within it. The window cannot be
-- an index predicate (it moves with the clock), so each (type, key) has one row in
-- `unique_keys` naming its latest job and when that job was created. Every keyed insert takes
-- that row's lock first (inserting it, or `FOR UPDATE`), so inserters of one key take turns
-- and each sees what the previous one committed: check and insert cannot race.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unique_key text;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_open_idx ON jobs (type, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');

CREATE TABLE IF NOT EXISTS unique_keys (
    type        text NOT NULL,
    unique_key  text NOT NULL,
    job_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (type, unique_key)
);

-- A key's row goes when its latest job is deleted (pruned): the table stays as small as the
-- keyed jobs kept, and a window never reaches past the retention of finished jobs.
CREATE OR REPLACE FUNCTION forget_unique_key() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM unique_keys k
    WHERE k.type = OLD.type AND k.unique_key = OLD.unique_key AND k.job_id = OLD.id;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS jobs_forget_unique_key ON jobs;
CREATE TRIGGER jobs_forget_unique_key AFTER DELETE ON jobs
    FOR EACH ROW WHEN (OLD.unique_key IS NOT NULL) EXECUTE FUNCTION forget_unique_key();

-- A type's unique policy, published with its max_attempts: the target fields its key is made
-- of (a JSON array of names) and its window in milliseconds.
ALTER TABLE job_types ADD COLUMN IF NOT EXISTS unique_fields jsonb;
ALTER TABLE job_types ADD COLUMN IF NOT EXISTS unique_for_ms bigint;
-- Types were published as max_attempts alone; a NOT NULL column with no default would break
-- an older node's publish during a rolling upgrade, so nothing here is NOT NULL.

-- The one keyed insert, shared by every path on PostgreSQL (the library, the CLI, the API,
-- `add_job`, `add_jobs` and cron), so that a key derived from a target is the same text
-- whoever inserts it. Returns the id of the job inserted, or of the job it duplicates.
CREATE OR REPLACE FUNCTION insert_job(
    p_id uuid, p_type text, p_target jsonb, p_run_at timestamptz, p_priority smallint,
    p_max_attempts integer, p_batch_id uuid, p_key text, p_unique_for interval,
    OUT inserted_id uuid, OUT duplicate boolean
) LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    fields jsonb;
    look_back interval := p_unique_for;
    policy_ms bigint;
    missing text;
    claimed timestamptz;
    claimed_by uuid;
BEGIN
    SELECT t.unique_fields, t.unique_for_ms INTO fields, policy_ms
    FROM job_types t WHERE t.type = p_type;
    IF look_back IS NULL AND policy_ms IS NOT NULL THEN
        look_back := policy_ms * interval '1 millisecond';
    END IF;
    IF p_key IS NULL AND fields IS NOT NULL THEN
        IF jsonb_typeof(p_target) <> 'object' THEN
            RAISE EXCEPTION 'type % makes its unique key from target fields %, so its target must be a JSON object', p_type, fields
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT f INTO missing FROM jsonb_array_elements_text(fields) AS f
        WHERE NOT p_target ? f LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'target has no field "%", which type %''s unique key is made of (fields %)', missing, p_type, fields
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT jsonb_agg(p_target -> u.f ORDER BY u.n)::text INTO p_key
        FROM jsonb_array_elements_text(fields) WITH ORDINALITY AS u(f, n);
    END IF;
    IF p_key IS NOT NULL AND (p_key = '' OR octet_length(p_key) > 512) THEN
        RAISE EXCEPTION 'unique_key must be 1 to 512 bytes, got %', octet_length(p_key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF look_back IS NOT NULL AND look_back < interval '0' THEN
        RAISE EXCEPTION 'unique_for must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    duplicate := false;
    IF p_key IS NOT NULL THEN
        -- The key's row: ours if new, else locked (waiting for a concurrent inserter of the
        -- same key to commit or roll back) and read as it now is.
        INSERT INTO unique_keys (type, unique_key, job_id, created_at)
        VALUES (p_type, p_key, p_id, now()) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.job_id, k.created_at INTO claimed_by, claimed FROM unique_keys k
            WHERE k.type = p_type AND k.unique_key = p_key FOR UPDATE;
            SELECT j.id INTO inserted_id FROM jobs j
            WHERE j.type = p_type AND j.unique_key = p_key AND j.status IN ('pending', 'running');
            IF inserted_id IS NOT NULL THEN
                duplicate := true;
                RETURN;
            END IF;
            IF look_back IS NOT NULL AND claimed > now() - look_back THEN
                inserted_id := claimed_by;
                duplicate := true;
                RETURN;
            END IF;
            UPDATE unique_keys k SET job_id = p_id, created_at = now()
            WHERE k.type = p_type AND k.unique_key = p_key;
        END IF;
    END IF;
    INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, unique_key)
    VALUES (p_id, p_type, p_target,
            COALESCE(p_max_attempts,
                     (SELECT t.max_attempts FROM job_types t WHERE t.type = p_type), 3),
            COALESCE(p_run_at, now()), COALESCE(p_priority, 0), p_batch_id, p_key)
    ON CONFLICT (type, unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')
    DO NOTHING;
    IF NOT FOUND THEN
        -- An open job with this key that no key row named (written straight into the table):
        -- it is the one, and its row says so from now on.
        SELECT j.id INTO inserted_id FROM jobs j
        WHERE j.type = p_type AND j.unique_key = p_key AND j.status IN ('pending', 'running');
        UPDATE unique_keys k SET job_id = inserted_id
        WHERE k.type = p_type AND k.unique_key = p_key;
        duplicate := true;
        RETURN;
    END IF;
    inserted_id := p_id;
END $$;

-- `add_job` gains `unique_key` and `unique_for`. Dropped and created again rather than
-- overloaded: two candidates would make every existing call ambiguous. Calls by position or
-- by name that worked before work the same.
DROP FUNCTION IF EXISTS add_job(text, jsonb, timestamptz, smallint, integer, uuid);
CREATE OR REPLACE FUNCTION add_job(
    job_type      text,
    target        jsonb DEFAULT '{}',
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL,
    unique_key    text DEFAULT NULL,
    unique_for    interval DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT AS $$
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
    RETURN (SELECT r.inserted_id FROM insert_job(uuid_v7(), add_job.job_type, add_job.target,
            add_job.run_at, add_job.priority, add_job.max_attempts, add_job.batch_id,
            add_job.unique_key, add_job.unique_for) AS r);
END $$;

-- `add_jobs` gains `unique_keys` (one per target, NULL for none) and `unique_for`; a type's
-- `unique` fields apply to every target. A duplicate (of an open job, or within the call)
-- yields the id of the job it duplicates, so the result still has one id per target.
DROP FUNCTION IF EXISTS add_jobs(text, jsonb[], timestamptz, smallint, integer, uuid);
CREATE OR REPLACE FUNCTION add_jobs(
    job_type      text,
    targets       jsonb[],
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL,
    unique_keys   text[] DEFAULT NULL,
    unique_for    interval DEFAULT NULL
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
    IF unique_keys IS NOT NULL AND cardinality(unique_keys) <> cardinality(targets) THEN
        RAISE EXCEPTION 'unique_keys must have one entry per target (% targets, % keys)',
            cardinality(targets), cardinality(unique_keys)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF unique_keys IS NULL AND add_jobs.unique_for IS NULL AND NOT EXISTS
        (SELECT 1 FROM job_types p WHERE p.type = job_type AND p.unique_fields IS NOT NULL) THEN
        RETURN QUERY
        INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id)
        SELECT uuid_v7(), job_type, t.target,
               COALESCE(add_jobs.max_attempts,
                        (SELECT p.max_attempts FROM job_types p WHERE p.type = job_type), 3),
               COALESCE(add_jobs.run_at, now()), COALESCE(add_jobs.priority, 0), add_jobs.batch_id
        FROM unnest(targets) WITH ORDINALITY AS t(target, n)
        ORDER BY t.n
        RETURNING id;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT r.inserted_id
    FROM unnest(targets) WITH ORDINALITY AS t(target, n)
    CROSS JOIN LATERAL insert_job(uuid_v7(), job_type, t.target, add_jobs.run_at,
        add_jobs.priority, add_jobs.max_attempts, add_jobs.batch_id,
        add_jobs.unique_keys[t.n], add_jobs.unique_for) AS r
    ORDER BY t.n;
END $$;

-- Cron: each entry's last tick claimed, by name. A node inserts a tick's job only by moving
-- this mark forward from the value it read (compare-and-set), in the transaction that
-- inserts the job: of any number of nodes evaluating the same tick exactly one wins, the
-- mark never moves back, so a tick never runs twice even after its job finished and was
-- pruned, and missed ticks are found by comparing the mark with the clock.
CREATE TABLE IF NOT EXISTS cron (
    name        text PRIMARY KEY,
    last_tick   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
