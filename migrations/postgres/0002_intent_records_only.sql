-- Intent records (`holds`) are the one record of what a runner is about to run, on both
-- stores and whether or not the node heartbeats, so heartbeats no longer carry a list.
ALTER TABLE nodes DROP COLUMN IF EXISTS held;
-- Rescue looks up abandoned records by age.
CREATE INDEX IF NOT EXISTS holds_written_idx ON holds (written_at);
-- The hand-written migrator's bookkeeping, replaced by sqlx's `_sqlx_migrations`.
DROP TABLE IF EXISTS migrations;
