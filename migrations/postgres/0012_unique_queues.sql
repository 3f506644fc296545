-- Unique jobs (0006) and named queues (0007) both give `add_job` and `add_jobs` more
-- arguments; they are defined once, here, with the union: `unique_key`/`unique_keys` and
-- `unique_for`, then `queue` last. The versions of 0003 go first (an overload with more
-- defaulted arguments would make every old call ambiguous); calls by position or by name from
-- before either feature mean what they meant.
--
-- `insert_job` is the one keyed insert every path shares, so that a key derived from a
-- target is the same text whoever inserts it. It puts a keyed job in its queue (its own or
-- its type's) and says which queue the job is in: a duplicate's is the existing job's, since
-- keys are per (type, key) whatever the queue.
DROP FUNCTION IF EXISTS add_job(text, jsonb, timestamptz, smallint, integer, uuid);
DROP FUNCTION IF EXISTS add_jobs(text, jsonb[], timestamptz, smallint, integer, uuid);

CREATE FUNCTION insert_job(
    p_id uuid, p_type text, p_target jsonb, p_run_at timestamptz, p_priority smallint,
    p_max_attempts integer, p_batch_id uuid, p_key text, p_unique_for interval,
    p_queue text DEFAULT NULL,
    OUT inserted_id uuid, OUT duplicate boolean, OUT inserted_queue text
) LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    fields jsonb;
    look_back interval := p_unique_for;
    policy_ms bigint;
    missing text;
    claimed timestamptz;
    claimed_by uuid;
    type_queue text;
    open_queue text;
BEGIN
    IF p_queue IS NOT NULL AND p_queue !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid queue %: ASCII letters, digits, _ - . (at most 64)',
            left(p_queue, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.unique_fields, t.unique_for_ms, t.queue INTO fields, policy_ms, type_queue
    FROM job_types t WHERE t.type = p_type;
    inserted_queue := COALESCE(p_queue, type_queue, 'default');
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
            SELECT j.id, j.queue INTO inserted_id, open_queue FROM jobs j
            WHERE j.type = p_type AND j.unique_key = p_key AND j.status IN ('pending', 'running');
            IF inserted_id IS NOT NULL THEN
                inserted_queue := open_queue;
                duplicate := true;
                RETURN;
            END IF;
            IF look_back IS NOT NULL AND claimed > now() - look_back THEN
                inserted_id := claimed_by;
                inserted_queue := COALESCE(
                    (SELECT j.queue FROM jobs j WHERE j.id = claimed_by), inserted_queue);
                duplicate := true;
                RETURN;
            END IF;
            UPDATE unique_keys k SET job_id = p_id, created_at = now()
            WHERE k.type = p_type AND k.unique_key = p_key;
        END IF;
    END IF;
    INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, unique_key,
                      queue)
    VALUES (p_id, p_type, p_target,
            COALESCE(p_max_attempts,
                     (SELECT t.max_attempts FROM job_types t WHERE t.type = p_type), 3),
            COALESCE(p_run_at, now()), COALESCE(p_priority, 0), p_batch_id, p_key,
            inserted_queue)
    ON CONFLICT (type, unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')
    DO NOTHING;
    IF NOT FOUND THEN
        -- An open job with this key that no key row named (written straight into the table):
        -- it is the one, and its row says so from now on.
        SELECT j.id, j.queue INTO inserted_id, open_queue FROM jobs j
        WHERE j.type = p_type AND j.unique_key = p_key AND j.status IN ('pending', 'running');
        inserted_queue := COALESCE(open_queue, inserted_queue);
        UPDATE unique_keys k SET job_id = inserted_id
        WHERE k.type = p_type AND k.unique_key = p_key;
        duplicate := true;
        RETURN;
    END IF;
    inserted_id := p_id;
END $$;

CREATE OR REPLACE FUNCTION add_job(
    job_type      text,
    target        jsonb DEFAULT '{}',
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL,
    unique_key    text DEFAULT NULL,
    unique_for    interval DEFAULT NULL,
    queue         text DEFAULT NULL
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
            add_job.unique_key, add_job.unique_for, add_job.queue) AS r);
END $$;

CREATE OR REPLACE FUNCTION add_jobs(
    job_type      text,
    targets       jsonb[],
    run_at        timestamptz DEFAULT NULL,
    priority      smallint DEFAULT 0,
    max_attempts  integer DEFAULT NULL,
    batch_id      uuid DEFAULT NULL,
    unique_keys   text[] DEFAULT NULL,
    unique_for    interval DEFAULT NULL,
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
    IF unique_keys IS NOT NULL AND cardinality(unique_keys) <> cardinality(targets) THEN
        RAISE EXCEPTION 'unique_keys must have one entry per target (% targets, % keys)',
            cardinality(targets), cardinality(unique_keys)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF add_jobs.queue IS NOT NULL AND add_jobs.queue !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid queue %: ASCII letters, digits, _ - . (at most 64)',
            left(add_jobs.queue, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF unique_keys IS NULL AND add_jobs.unique_for IS NULL AND NOT EXISTS
        (SELECT 1 FROM job_types p WHERE p.type = job_type AND p.unique_fields IS NOT NULL) THEN
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
        RETURN;
    END IF;
    RETURN QUERY
    SELECT r.inserted_id
    FROM unnest(targets) WITH ORDINALITY AS t(target, n)
    CROSS JOIN LATERAL insert_job(uuid_v7(), job_type, t.target, add_jobs.run_at,
        add_jobs.priority, add_jobs.max_attempts, add_jobs.batch_id,
        add_jobs.unique_keys[t.n], add_jobs.unique_for, add_jobs.queue) AS r
    ORDER BY t.n;
END $$;
