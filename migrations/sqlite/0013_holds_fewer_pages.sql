-- Intent records are written twice a chunk (inserted and committed before its transaction
-- opens, deleted inside it), so every b-tree page they touch is a page written to the WAL
-- twice per chunk. The table holds one row per runner slot (plus a dead node's until
-- maintenance clears them): a handful of rows, which the lookups by node or by age read
-- directly. Without its two secondary indexes a record touches two pages instead of four.
DROP INDEX IF EXISTS holds_node_idx;
DROP INDEX IF EXISTS holds_written_idx;
