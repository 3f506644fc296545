-- The counts kept by queue as well as by type and status (see the PostgreSQL migration of
-- the same name): the status report's "pending jobs no live node can run" reads them instead
-- of grouping every pending job (200 ms at a backlog of 100,000).
DROP TABLE IF EXISTS counts;
CREATE TABLE counts (
    type    TEXT NOT NULL,
    queue   TEXT NOT NULL,
    status  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (type, queue, status)
) WITHOUT ROWID;

INSERT INTO counts (type, queue, status, n)
SELECT type, queue, status, count(*) FROM jobs GROUP BY type, queue, status;

DROP TRIGGER IF EXISTS jobs_count_insert;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO counts (type, queue, status, n) VALUES (new.type, new.queue, new.status, 1)
        ON CONFLICT (type, queue, status) DO UPDATE SET n = n + 1;
END;

DROP TRIGGER IF EXISTS jobs_count_update;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF status, type, queue ON jobs
    WHEN old.status IS NOT new.status OR old.type IS NOT new.type
      OR old.queue IS NOT new.queue BEGIN
    UPDATE counts SET n = n - 1
        WHERE type = old.type AND queue = old.queue AND status = old.status;
    INSERT INTO counts (type, queue, status, n) VALUES (new.type, new.queue, new.status, 1)
        ON CONFLICT (type, queue, status) DO UPDATE SET n = n + 1;
END;

DROP TRIGGER IF EXISTS jobs_count_delete;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE counts SET n = n - 1
        WHERE type = old.type AND queue = old.queue AND status = old.status;
END;
