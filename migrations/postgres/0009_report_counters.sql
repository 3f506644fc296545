-- Counts by type and status that do not grow with history. The report used to count every
-- row of `jobs` (2.3 s at ten million finished rows); now it reads a few rows per type.
--
-- Exact under concurrency without a hot row: every statement that inserts, deletes or updates
-- jobs appends what it changed (a few rows: per type and status, how many came and went) to
-- `count_deltas`, in its own transaction, so the counts commit or roll back with the change
-- itself. Appending takes no lock that another statement waits for. Maintenance folds the
-- deltas into `counts` (one transaction: delete the deltas, add them up); the report reads
-- `counts` plus whatever deltas are not folded yet, in one statement, so it sees each change
-- exactly once whether or not a fold committed in between.
CREATE TABLE IF NOT EXISTS counts (
    type    text NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (type, status)
);

-- `status` is a job status, or `completed`: successes whose rows were deleted by the chunk
-- that completed them (retention zero), which count toward throughput and nothing else.
-- `at` is when the change was made, for the report's throughput.
CREATE TABLE IF NOT EXISTS count_deltas (
    type    text NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Jobs finished per second, for the report's recent throughput, folded from the deltas and
-- kept ten minutes: the report reads a few hundred rows, never the jobs table (whose
-- finished_at index, a BRIN, only covers rows a vacuum has summarised).
CREATE TABLE IF NOT EXISTS finished_per_second (
    second  timestamptz PRIMARY KEY,
    n       bigint NOT NULL
);

-- A statement-level trigger (one call per statement, not per row) reading the statement's
-- transition tables. Updates that leave every status as it was (lease renewals, say) add
-- nothing.
CREATE OR REPLACE FUNCTION count_job_changes() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO count_deltas (type, status, n)
        SELECT type, status, count(*) FROM new_rows GROUP BY type, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO count_deltas (type, status, n)
        SELECT type, status, -count(*) FROM old_rows GROUP BY type, status;
    ELSE
        INSERT INTO count_deltas (type, status, n)
        SELECT type, status, sum(n) FROM (
            SELECT type, status, 1 AS n FROM new_rows
            UNION ALL
            SELECT type, status, -1 FROM old_rows
        ) d GROUP BY type, status HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

-- A TRUNCATE of jobs empties the counts with it.
CREATE OR REPLACE FUNCTION count_jobs_truncated() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM count_deltas;
    DELETE FROM counts;
    RETURN NULL;
END $$;

-- No job may change between the first count below and the triggers taking over.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

DROP TRIGGER IF EXISTS jobs_count_insert ON jobs;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_job_changes();
DROP TRIGGER IF EXISTS jobs_count_update ON jobs;
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_job_changes();
DROP TRIGGER IF EXISTS jobs_count_delete ON jobs;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_job_changes();
DROP TRIGGER IF EXISTS jobs_count_truncate ON jobs;
CREATE TRIGGER jobs_count_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION count_jobs_truncated();

-- The jobs already there: counted once, while nothing can change them.
DELETE FROM count_deltas;
DELETE FROM counts;
INSERT INTO counts (type, status, n)
SELECT type, status, count(*) FROM jobs GROUP BY type, status;
