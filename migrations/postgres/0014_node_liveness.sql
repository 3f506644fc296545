-- A node is alive while its heartbeat session is connected, not only while its last heartbeat
-- is recent. A soak once drove the database so hard that a live node's heartbeat fell more
-- than the node timeout behind; the reconciler judged it dead, deleted its row and charged
-- its intent records, which fed the overload further. A heartbeat can be late; a session that
-- is still connected cannot belong to a process that was killed (the kernel closes a dead
-- process's sockets, and the server ends the session and its locks at once).
--
-- Each node keeps one connection of its own for its heartbeat and holds a session advisory
-- lock on `alive_key` (random, chosen at the node's first heartbeat) on it. A node is dead
-- only when its heartbeat is older than the node timeout AND nobody holds that lock. A
-- machine that vanished without closing its sockets is found by the TCP keepalives the
-- heartbeat session sets (about 11 s).

ALTER TABLE nodes ADD COLUMN IF NOT EXISTS alive_key bigint;

-- Whether a session of this database holds the advisory lock `pg_advisory_lock(k)`. The
-- lock table is small (row locks never enter it), and the callers ask only for nodes whose
-- heartbeat is already late.
CREATE OR REPLACE FUNCTION node_connected(k bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE COST 1000 AS $$
    SELECT k IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks l
        WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
          AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                            WHERE d.datname = current_database())
          AND l.classid = (k >> 32)::oid AND l.objid = (k & 4294967295)::oid)
$$;
