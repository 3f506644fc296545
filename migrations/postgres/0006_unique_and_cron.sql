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

-- The keyed insert every path shares (`insert_job`), and `add_job`/`add_jobs` taking keys,
-- are created by 0012, with the queue argument of 0007: one definition of each.

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
