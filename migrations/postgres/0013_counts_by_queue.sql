-- The counts kept by queue as well as by type and status, so that the status report's "pending
-- jobs no live node can run" (by queue and type) reads a few rows instead of grouping every
-- pending job: at a backlog of a million that grouping alone took about a second, on every
-- report and every dashboard poll.
--
-- Same scheme as 0009: statement-level triggers append deltas, maintenance folds them.
-- `queue` is NULL only on `completed` deltas (throughput of deleted successes), which never
-- reach `counts`.

-- No job may change between the count below and the new triggers taking over.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE count_deltas ADD COLUMN IF NOT EXISTS queue text;

DROP TABLE IF EXISTS counts;
CREATE TABLE counts (
    type    text NOT NULL,
    queue   text NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (type, queue, status)
);
-- As 0011 set them for the table this one replaces.
ALTER TABLE counts SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);

CREATE OR REPLACE FUNCTION count_job_changes() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO count_deltas (type, queue, status, n)
        SELECT type, queue, status, count(*) FROM new_rows GROUP BY type, queue, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO count_deltas (type, queue, status, n)
        SELECT type, queue, status, -count(*) FROM old_rows GROUP BY type, queue, status;
    ELSE
        INSERT INTO count_deltas (type, queue, status, n)
        SELECT type, queue, status, sum(n) FROM (
            SELECT type, queue, status, 1 AS n FROM new_rows
            UNION ALL
            SELECT type, queue, status, -1 FROM old_rows
        ) d GROUP BY type, queue, status HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

DELETE FROM count_deltas WHERE status <> 'completed';
INSERT INTO counts (type, queue, status, n)
SELECT type, queue, status, count(*) FROM jobs GROUP BY type, queue, status;
