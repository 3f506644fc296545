-- Counts by type and status that do not grow with history (see the PostgreSQL migration of
-- the same number). SQLite has one writer at a time, so the totals are kept current in place
-- by row triggers, in the same transaction as each change: no contention to avoid, nothing
-- to fold later.
CREATE TABLE IF NOT EXISTS counts (
    type    TEXT NOT NULL,
    status  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (type, status)
) WITHOUT ROWID;

DELETE FROM counts;
INSERT INTO counts (type, status, n) SELECT type, status, count(*) FROM jobs GROUP BY type, status;

DROP TRIGGER IF EXISTS jobs_count_insert;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO counts (type, status, n) VALUES (new.type, new.status, 1)
        ON CONFLICT (type, status) DO UPDATE SET n = n + 1;
END;

DROP TRIGGER IF EXISTS jobs_count_update;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF status, type ON jobs
    WHEN old.status IS NOT new.status OR old.type IS NOT new.type BEGIN
    UPDATE counts SET n = n - 1 WHERE type = old.type AND status = old.status;
    INSERT INTO counts (type, status, n) VALUES (new.type, new.status, 1)
        ON CONFLICT (type, status) DO UPDATE SET n = n + 1;
END;

DROP TRIGGER IF EXISTS jobs_count_delete;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE counts SET n = n - 1 WHERE type = old.type AND status = old.status;
END;

-- Successes deleted by the chunk that completed them (retention zero) leave no row for the
-- report's throughput to count: they are counted here instead, per Unix second, and kept ten
-- minutes.
CREATE TABLE IF NOT EXISTS completions_per_second (
    second  INTEGER PRIMARY KEY,
    n       INTEGER NOT NULL
);
