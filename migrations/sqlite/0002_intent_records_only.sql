-- Intent records: what each runner slot is about to run, committed just before its chunk's
-- transaction opens, whether or not the node heartbeats. The chunk's own transaction deletes
-- its record, so a record that survives names jobs whose chunk never committed.
CREATE TABLE IF NOT EXISTS holds (
    slot        TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    ids         TEXT NOT NULL CHECK (json_valid(ids)),
    written_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS holds_node_idx ON holds (node_id);
CREATE INDEX IF NOT EXISTS holds_written_idx ON holds (written_at);
-- Heartbeats no longer carry the held list.
ALTER TABLE nodes DROP COLUMN held;
-- The hand-written migrator's bookkeeping, replaced by sqlx's `_sqlx_migrations`.
DROP TABLE IF EXISTS migrations;
