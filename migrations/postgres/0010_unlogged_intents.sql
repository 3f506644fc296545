-- Intent records, take two: `intents` replaces `holds` as what a runner writes before each
-- chunk. Two costs of `holds` go away:
--   * WAL. The record only has to outlive the runner's process, not the database server, so
--     the table is UNLOGGED: writing it costs no WAL and no fsync. (A server crash empties it,
--     and a server crash also rolls back every chunk it could have described.)
--   * Dead versions on a hot row. Each chunk upserted its slot's row of `holds`; while any
--     other session held an old snapshot (idle in transaction), none of those versions could
--     be pruned, and every upsert walked all of them. A chunk now appends a row, which costs
--     the same however many dead rows there are, and the node's heartbeat deletes its slots'
--     superseded rows (no index to maintain on the chunk's path).
-- `holds` stays, read beside `intents`, for nodes of the previous release during a rolling
-- upgrade; it is empty once they are gone.
CREATE UNLOGGED TABLE IF NOT EXISTS intents (
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    slot        uuid NOT NULL,
    node_id     text NOT NULL,
    ids         uuid[] NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
