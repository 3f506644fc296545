//! Every statement the PostgreSQL store runs, by name. `{s}` stands for the quoted schema and
//! is substituted once at start-up; user input only ever arrives as bind parameters.
//!
//! Why qualified names rather than a `search_path` on the pool: processors' own SQL runs on
//! these connections, and a `search_path` naming skiplock's schema would let its `jobs` table
//! shadow a user's `jobs` (or the reverse, with the schema last). Migrations, which only touch
//! skiplock's tables, do run under `SET LOCAL search_path` (see `migrations/postgres`).
//!
//! **Plans that cannot flip.** A statement that reaches jobs by id writes its status guard as
//! `(status = 'pending') IS TRUE`: the same test (status is never NULL), but one the planner
//! cannot match to a partial index's `WHERE status = 'pending'`. Written plainly, the guard
//! lets the planner trade the primary key for a whole scan of `jobs_queue_due_idx` (or
//! `jobs_lease_idx`) whenever its statistics say that index is empty, which they do after the
//! table is analysed between bursts, the normal state of a healthy queue; each chunk then costs
//! as much as the backlog. Only the claim, the reconciler and the rescue of expired leases
//! name a status plainly: they are meant to walk those partial indexes. `tests/plans.rs`
//! checks every one of them with `EXPLAIN` under empty, stale and fresh statistics.

/// `j.attempt_history` with one failed attempt appended, trimmed to the newest 20
/// (`ATTEMPT_HISTORY_LEN`: the jsonpath keeps `last - 19 to last`). Arguments are SQL
/// expressions: the error, the node, the milliseconds it took, when, and the status the job
/// takes (`pending` is recorded as a `retry`).
macro_rules! history_append {
    ($error:expr, $node:expr, $took:expr, $at:expr, $status:expr) => {
        history_append!(@attempt "j.attempts + 1", $error, $node, $took, $at, $status)
    };
    // `$attempt`: the attempt's number, when it is not the next one (lease mode charged it at
    // the claim).
    (@attempt $attempt:expr, $error:expr, $node:expr, $took:expr, $at:expr, $status:expr) => {
        concat!(
            "jsonb_path_query_array(COALESCE(j.attempt_history, '[]'::jsonb) || ",
            "jsonb_build_array(jsonb_build_object(",
            "'attempt', ",
            $attempt,
            ", 'at', ",
            $at,
            ", 'node', ",
            $node,
            ", 'took_ms', ",
            $took,
            ", 'error', ",
            $error,
            ", 'outcome', CASE WHEN ",
            $status,
            " = 'pending' THEN 'retry' ELSE ",
            $status,
            " END)), '$[last - 19 to last]')"
        )
    };
}

pub const JOB_COLUMNS: &str = "id, type, target, status, attempts, max_attempts, run_at, \
    priority, batch_id, queue, last_error, created_at, updated_at, finished_at, node_id, \
    traceparent";

pub const INSERT_BATCH_ROW: &str =
    "INSERT INTO {s}.batches (id, name, type, total) VALUES ($1, $2, $3, $4)";

/// A batch's queue and `max_attempts`, resolved once before its rows go in (`copy.rs`
/// writes them into every row): its own (`$1`, `$3`), else its type's (`$2`), else `default`
/// and 3 (the rule every insert path applies).
pub const RESOLVE_BATCH: &str = "SELECT \
    COALESCE($1::text, (SELECT t.queue FROM {s}.job_types t WHERE t.type = $2), 'default'), \
    COALESCE($3::int, (SELECT t.max_attempts FROM {s}.job_types t WHERE t.type = $2), 3)";

/// One statement per chunk of mixed jobs, with the same policy rule per job (its
/// `max_attempts` and its queue). Returns each job's queue, for the push after commit.
pub const INSERT_JOBS: &str = "INSERT INTO {s}.jobs \
    (id, type, target, max_attempts, run_at, priority, queue, traceparent) \
    SELECT u.id, u.type, u.target, \
    COALESCE(u.max_attempts, (SELECT t.max_attempts FROM {s}.job_types t WHERE t.type = u.type), 3), \
    COALESCE(u.run_at, now()), u.priority, \
    COALESCE(u.queue, (SELECT t.queue FROM {s}.job_types t WHERE t.type = u.type), 'default'), \
    u.traceparent \
    FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::smallint[], \
    $7::text[], $8::text[]) AS u(id, type, target, max_attempts, run_at, priority, queue, traceparent) \
    RETURNING id, queue";

/// The trace of keyed jobs inserted through `insert_job`: `$1` ids, `$2` their traceparents.
pub const SET_TRACEPARENTS: &str = "UPDATE {s}.jobs AS j SET traceparent = u.tp \
    FROM UNNEST($1::uuid[], $2::text[]) AS u(id, tp) WHERE j.id = u.id AND j.id = ANY($1)";

/// Publishes a node's type policy: `$1` types, `$2` their max_attempts, `$3` their unique
/// fields (a JSON array, or NULL), `$4` their unique windows in milliseconds (or NULL), `$5`
/// their queues (NULL: `default`).
pub const PUBLISH_POLICY: &str = "INSERT INTO {s}.job_types \
    (type, max_attempts, unique_fields, unique_for_ms, queue) \
    SELECT * FROM UNNEST($1::text[], $2::int[], $3::jsonb[], $4::bigint[], $5::text[]) \
    ON CONFLICT (type) DO UPDATE SET max_attempts = EXCLUDED.max_attempts, \
    unique_fields = EXCLUDED.unique_fields, unique_for_ms = EXCLUDED.unique_for_ms, \
    queue = EXCLUDED.queue, updated_at = now() \
    WHERE (job_types.max_attempts, job_types.unique_fields, job_types.unique_for_ms, \
    job_types.queue) IS DISTINCT FROM (EXCLUDED.max_attempts, EXCLUDED.unique_fields, \
    EXCLUDED.unique_for_ms, EXCLUDED.queue)";

/// Of `$1`, the types whose jobs get a unique key derived from their target: their jobs take
/// the keyed insert even when the caller gave no key.
pub const UNIQUE_TYPES: &str = "SELECT type FROM {s}.job_types \
    WHERE type = ANY($1) AND unique_fields IS NOT NULL";

/// Jobs with a unique key (given, or derived by their type), one `insert_job` call each in
/// order, so that a later duplicate within the same statement finds the earlier job. `$9` is
/// the batch, or NULL; `$10` each job's queue (NULL: its type's, else `default`). Returns
/// (id, duplicate, queue) per job, in order; a duplicate's queue is the existing job's.
pub const INSERT_KEYED: &str = "SELECT r.inserted_id, r.duplicate, r.inserted_queue \
    FROM UNNEST($1::uuid[], \
    $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::smallint[], $7::text[], \
    $8::bigint[], $10::text[]) WITH ORDINALITY AS u(id, type, target, max_attempts, run_at, \
    priority, key, for_ms, queue, n) \
    CROSS JOIN LATERAL {s}.insert_job(u.id, u.type, u.target, u.run_at, u.priority, \
    u.max_attempts, $9::uuid, u.key, u.for_ms * interval '1 millisecond', u.queue) AS r \
    ORDER BY u.n";

/// Cron entries' marks: the last tick each claimed.
pub const CRON_MARKS: &str = "SELECT name, last_tick FROM {s}.cron ORDER BY name";

/// A new entry's first mark; a concurrent node that made it first wins.
pub const CRON_CREATE: &str = "INSERT INTO {s}.cron (name, last_tick) VALUES ($1, $2) \
    ON CONFLICT (name) DO NOTHING";

/// Compare-and-set: moves the mark only from the value this node read. A concurrent claim of
/// the same ticks waits for the row lock, then finds the mark moved and changes nothing.
pub const CRON_ADVANCE: &str = "UPDATE {s}.cron SET last_tick = $3, updated_at = now() \
    WHERE name = $1 AND last_tick = $2 AND $3 > last_tick";

/// A batch counts the jobs it holds: duplicates are not among them.
pub const SET_BATCH_TOTAL: &str = "UPDATE {s}.batches SET total = $2 WHERE id = $1";

/// The heart of the design: lock the popped IDs that are still pending and due, skipping any
/// row another transaction holds. A duplicate or stale ID simply finds nothing, and so does
/// an ID of a queue this runner does not serve (`$2`) or of a type this node has no processor
/// for (`$3`): such a job stays pending, untouched and uncharged, for a node that can run it.
pub const LOCK_CHUNK: &str = "SELECT {cols}, txid_current() AS xid FROM {s}.jobs \
    WHERE id = ANY($1) AND (status = 'pending') IS TRUE AND run_at <= now() \
    AND queue = $2 AND type = ANY($3) \
    FOR UPDATE SKIP LOCKED";

/// Lease mode's claim, in the chunk's transaction: the jobs become `running`, owned by the
/// node (`node_id`), with a lease deadline and their attempt charged. `$1` ids, `$2` node,
/// `$3` lease length in milliseconds.
pub const LEASE_JOBS: &str = "UPDATE {s}.jobs SET status = 'running', attempts = attempts + 1, \
    node_id = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond', \
    updated_at = clock_timestamp() WHERE id = ANY($1) AND (status = 'pending') IS TRUE";

/// Lease mode's outcomes, fenced: a row changes only if it is still the same attempt of the
/// same node's lease, so a node that lost its lease (paused, cut off) cannot overwrite the
/// attempt that replaced it. The attempt was charged at the claim. Returns what it changed.
pub const COMPLETE_LEASES: &str = concat!(
    "UPDATE {s}.jobs AS j SET ",
    "status = o.status, ",
    "last_error = COALESCE(o.error, j.last_error), ",
    "attempt_history = CASE WHEN o.error IS NULL THEN j.attempt_history ELSE ",
    history_append!(
        @attempt "j.attempts",
        "o.error",
        "$6::text",
        "o.took_ms",
        "clock_timestamp()",
        "o.status"
    ),
    " END, ",
    "run_at = CASE WHEN o.delay_ms IS NULL THEN j.run_at ",
    "ELSE clock_timestamp() + o.delay_ms * interval '1 millisecond' END, ",
    "finished_at = CASE WHEN o.status = 'pending' THEN NULL ELSE clock_timestamp() END, ",
    "lease_until = NULL, updated_at = clock_timestamp() ",
    "FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::int[], $7::bigint[]) ",
    "AS o(id, status, error, delay_ms, attempt, took_ms) ",
    "WHERE j.id = o.id AND j.id = ANY($1) AND (j.status = 'running') IS TRUE ",
    "AND j.attempts = o.attempt AND j.node_id = $6 RETURNING j.id"
);

/// A node's heartbeat renews its leases; what comes back is what it still holds (a job
/// cancelled or rescued meanwhile does not).
pub const EXTEND_LEASES: &str = "UPDATE {s}.jobs SET \
    lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
    WHERE id = ANY($1) AND (status = 'running') IS TRUE AND node_id = $2 RETURNING id";

/// Leases given back at shutdown: the jobs did not finish, so their attempt is returned.
pub const RELEASE_LEASES: &str = "UPDATE {s}.jobs SET status = 'pending', \
    attempts = GREATEST(attempts - 1, 0), run_at = now(), lease_until = NULL, \
    updated_at = now() WHERE id = ANY($1) AND (status = 'running') IS TRUE AND node_id = $2";

/// Expired leases: their node stopped renewing them (killed, paused, cut off). The attempt
/// was charged at the claim; spent attempts end the job `failed`, others run again now.
pub const RESCUE_EXPIRED: &str = "UPDATE {s}.jobs SET \
    status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, \
    finished_at = CASE WHEN attempts >= max_attempts THEN now() END, \
    run_at = now(), lease_until = NULL, updated_at = now(), \
    last_error = 'lease expired: node ' || COALESCE(node_id, '?') || \
    ' stopped renewing it (killed, paused or cut off) while running this job' \
    WHERE id IN (SELECT id FROM {s}.jobs WHERE status = 'running' AND lease_until < now() \
                 FOR UPDATE SKIP LOCKED) RETURNING status";

/// Whether the chunk transaction `$1` committed: asked after a processor broke its chunk, to
/// learn whether it ended it with a COMMIT (its chunk-mates' writes then stand).
pub const XACT_STATUS: &str = "SELECT txid_status($1)";

/// The common case, every job of the chunk succeeded: the same statement the raw SQL would run.
pub const RECORD_SUCCESSES: &str = "UPDATE {s}.jobs SET status = 'succeeded', \
    attempts = attempts + 1, finished_at = clock_timestamp(), updated_at = clock_timestamp(), \
    node_id = $2 WHERE id = ANY($1)";

/// Successes whose type keeps succeeded jobs for zero time: deleted in the chunk's
/// transaction (the rows are locked by it), by primary key.
/// Their completions still count toward the report's throughput (`completed` deltas).
/// Returns how many rows it deleted.
pub const DELETE_SUCCEEDED: &str = "WITH d AS (DELETE FROM {s}.jobs WHERE id = ANY($1) \
    RETURNING type), c AS (INSERT INTO {s}.count_deltas (type, status, n) \
    SELECT type, 'completed', count(*) FROM d GROUP BY type) SELECT count(*) FROM d";

/// Every outcome of a chunk in one statement. `j.id = ANY($1)` is redundant with the join but
/// lets the planner reach the rows through the primary key instead of hashing the table.
/// A failure (an outcome with an error) also appends its attempt to the job's history, kept
/// to the last 20 (`ATTEMPT_HISTORY_LEN`); a success in the same chunk leaves it as it is.
pub const RECORD_OUTCOMES: &str = concat!(
    "UPDATE {s}.jobs AS j SET ",
    "status = o.status, ",
    "attempts = j.attempts + 1, ",
    "last_error = COALESCE(o.error, j.last_error), ",
    "attempt_history = CASE WHEN o.error IS NULL THEN j.attempt_history ELSE ",
    history_append!(
        "o.error",
        "$5::text",
        "o.took_ms",
        "clock_timestamp()",
        "o.status"
    ),
    " END, ",
    "run_at = CASE WHEN o.delay_ms IS NULL THEN j.run_at ",
    "ELSE clock_timestamp() + o.delay_ms * interval '1 millisecond' END, ",
    "finished_at = CASE WHEN o.status = 'pending' THEN NULL ELSE clock_timestamp() END, ",
    "updated_at = clock_timestamp(), ",
    "node_id = $5 ",
    "FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $6::bigint[]) ",
    "AS o(id, status, error, delay_ms, took_ms) ",
    "WHERE j.id = o.id AND j.id = ANY($1) AND (j.status = 'pending') IS TRUE"
);

/// Pending, due jobs of one queue (`$3`) and the types this node can run (`$4`) for the ID
/// queue, highest priority and oldest first, without those a live node's runner has said it
/// is running (its slot's latest intent record: the earlier ones describe chunks that ended,
/// and until the heartbeat prunes them there can be hundreds per slot, which made this
/// statement unnest every id they named: a second per refill in a soak): offering them again
/// would only make runners find them locked. Like the claim, it reads the head of
/// `jobs_queue_due_idx` for that one queue.
pub const DUE_PENDING: &str = "SELECT id, priority, queue FROM {s}.jobs \
    WHERE status = 'pending' AND queue = $3 AND type = ANY($4) AND run_at <= now() \
    AND id NOT IN (SELECT unnest(h.ids) FROM \
                   ((SELECT DISTINCT ON (slot) node_id, ids FROM {s}.intents \
                     ORDER BY slot, seq DESC) \
                    UNION ALL SELECT node_id, ids FROM {s}.holds) h \
                   JOIN {s}.nodes n ON n.id = h.node_id \
                   WHERE n.last_seen >= now() - $2 * interval '1 millisecond') \
    ORDER BY priority DESC, run_at, id LIMIT $1";

/// Of `$1`, the jobs that are pending and due, with their priority: what a push after commit
/// should carry.
pub const DUE_AMONG: &str = "SELECT id, priority, queue FROM {s}.jobs \
    WHERE id = ANY($1) AND (status = 'pending') IS TRUE AND run_at <= now()";

/// The database path to work: the most urgent pending, due jobs of one queue (`$2`) and of the
/// types this node has processors for (`$3`) that no other transaction holds, locked in the
/// chunk's own transaction. The partial index `jobs_queue_due_idx` (queue, priority DESC,
/// run_at, id) is in exactly this order within a queue, so the scan starts at this queue's
/// head, never touches another queue's entries, and stops after `$1` rows however many jobs
/// the table has finished. The type is a filter on that scan: jobs of the queue whose type
/// this node cannot run are stepped over (see the README on routing types to queues).
pub const CLAIM_CHUNK: &str = "SELECT {cols}, txid_current() AS xid FROM {s}.jobs \
    WHERE status = 'pending' AND queue = $2 AND type = ANY($3) AND run_at <= now() \
    ORDER BY priority DESC, run_at, id LIMIT $1 \
    FOR UPDATE SKIP LOCKED";

/// The heartbeat, which also deletes this node's superseded intent records (each slot's
/// newest one is the chunk it may be running), in the same round trip. `$8` the queues the
/// node serves (`{"name": runners}`), `$9` the types it can run. One pass over the node's
/// records (the table has no index, so that appending costs the chunk nothing more): each
/// slot's newest `seq`, then a hash join deletes the rest.
pub const HEARTBEAT: &str = "WITH latest AS (SELECT slot, max(seq) AS seq FROM {s}.intents \
    WHERE node_id = $1 GROUP BY slot), \
    superseded AS (DELETE FROM {s}.intents i USING latest l \
    WHERE i.node_id = $1 AND i.slot = l.slot AND i.seq < l.seq) \
    INSERT INTO {s}.nodes \
    (id, host, pid, concurrency, in_flight, processed, failed, last_seen, queues, types, \
     alive_key) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9, $10) \
    ON CONFLICT (id) DO UPDATE SET in_flight = EXCLUDED.in_flight, \
    processed = EXCLUDED.processed, failed = EXCLUDED.failed, \
    concurrency = EXCLUDED.concurrency, last_seen = now(), alive_key = EXCLUDED.alive_key";

pub const REMOVE_NODE: &str = "DELETE FROM {s}.nodes WHERE id = $1";

pub const REMOVE_HOLDS: &str = "WITH i AS (DELETE FROM {s}.intents WHERE node_id = $1) \
    DELETE FROM {s}.holds WHERE node_id = $1";

/// A runner's session settings. Its own statements (the lock, the claim, the outcomes, the
/// lease statements) run generic plans, made once per connection, instead of being planned
/// again at every chunk: with `id = ANY($1)` the planner kept choosing a custom plan each
/// time, and planning was 15 % of the server's CPU at one job per transaction. A generic plan
/// lives as long as the connection, so it must not depend on what the table held when it was
/// made: with sequential scans priced out, each statement takes its index (the primary key,
/// or the head of the pending index) even on the empty table of a new installation, where a
/// generic `UPDATE … WHERE id = ANY($1)` otherwise plans a sequential scan and keeps it as
/// the table grows. `tests/plans.rs` checks these plans under these settings.
pub const RUNNER_SESSION: &str =
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

/// What a job's processor runs with, behind its savepoint: the server's own settings (what
/// the session would have without [`RUNNER_SESSION`]), so its statements are planned as they
/// would be anywhere else.
pub const PROCESSOR_SESSION: &str =
    "SET LOCAL plan_cache_mode = DEFAULT; SET LOCAL enable_seqscan = DEFAULT";

/// A runner slot's intent record, committed on its own just before the chunk's transaction
/// opens: one appended row of the UNLOGGED `intents` (migration 0010), so it writes no WAL.
/// `set_config(…, true)` makes this one statement's commit asynchronous: the record must
/// survive the runner's process, not the database server, so it need not wait for a flush.
macro_rules! record_hold {
    () => {
        "INSERT INTO {s}.intents (slot, node_id, ids) \
         SELECT $1, $2, $3 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async"
    };
}
pub const RECORD_HOLD: &str = record_hold!();

/// [`RECORD_HOLD`], prepared once on each runner's connection (with the runner's session
/// setting, `chunk.rs`), so that the chunk's simple query below only names it: a literal
/// `INSERT` there was parsed, analysed and planned again at every chunk.
pub const PREPARE_HOLD: &str = concat!(
    "PREPARE skiplock_hold (uuid, text, uuid[]) AS ",
    record_hold!()
);

/// The intent record and the chunk's `BEGIN` in one simple query, for the lock path, where
/// the ids are known before the transaction opens: the record commits on its own (without
/// waiting for a flush), then the chunk's transaction is open. `$slot`, `$node` and `$ids`
/// are replaced by quoted literals (`chunk.rs`), not bound.
pub const HOLD_THEN_BEGIN: &str = "BEGIN; EXECUTE skiplock_hold($slot, $node, $ids); COMMIT; BEGIN";

pub const DELETE_DEAD_NODES: &str = "DELETE FROM {s}.nodes \
    WHERE last_seen < now() - $1 * interval '1 millisecond' AND NOT {s}.node_connected(alive_key)";

/// An intent record is abandoned when it is older than the node timeout and its node is dead
/// (see [`DELETE_DEAD_NODES`]; a node that never heartbeats is judged by its records alone).
macro_rules! abandoned {
    () => {
        "h.written_at < now() - $1 * interval '1 millisecond' AND NOT EXISTS \
         (SELECT 1 FROM live l WHERE l.id = h.node_id)"
    };
}

/// The live nodes, for [`abandoned`]: asked once per node and statement, never once per
/// record. `node_connected` reads the server's lock table, which takes every lock-manager
/// partition lock; asked for each of thousands of records of a node whose heartbeat was
/// late, it stalled every other session's locking and the rescue statement ran for minutes
/// (a soak on this machine collapsed that way).
macro_rules! live_nodes {
    () => {
        "live AS MATERIALIZED (SELECT n.id FROM {s}.nodes n \
         WHERE n.last_seen >= now() - $1 * interval '1 millisecond' \
         OR {s}.node_connected(n.alive_key)), "
    };
}

/// The error an abandoned attempt is charged with.
macro_rules! abandoned_error {
    () => {
        "('abandoned: node ' || v.node || ' stopped (killed or crashed) while running this job')"
    };
}

/// Takes up to `$2` abandoned intent records (and as many of the previous release's `holds`)
/// and charges an attempt to each job they name that is still pending, untouched since the
/// record was written, and not locked by a node that has picked it up since; spent attempts
/// end the job `failed`: a poison job. The records go in the same statement. Returns how many
/// records it took and the charged jobs' new statuses: the caller repeats it while it takes a
/// full batch, so that no one statement (and the snapshot it holds, which keeps vacuum from
/// every row deleted since) grows with how many records a dead node left. A node judged dead
/// under load once left thousands of records of up to a thousand jobs each, and the single
/// statement that charged them ran for minutes while the table bloated around it.
pub const CHARGE_ABANDONED: &str = concat!(
    "WITH ",
    live_nodes!(),
    "rec AS (DELETE FROM {s}.intents h WHERE h.ctid = ANY(ARRAY(",
    "SELECT h.ctid FROM {s}.intents h WHERE ",
    abandoned!(),
    " LIMIT $2)) RETURNING h.node_id, h.ids, h.written_at), ",
    "old AS (DELETE FROM {s}.holds h WHERE h.ctid = ANY(ARRAY(",
    "SELECT h.ctid FROM {s}.holds h WHERE ",
    abandoned!(),
    " LIMIT $2)) RETURNING h.node_id, h.ids, h.written_at), ",
    "charged AS (UPDATE {s}.jobs AS j SET ",
    "attempts = j.attempts + 1, ",
    "status = CASE WHEN j.attempts + 1 >= j.max_attempts THEN 'failed' ELSE 'pending' END, ",
    "finished_at = CASE WHEN j.attempts + 1 >= j.max_attempts THEN now() END, ",
    "last_error = ",
    abandoned_error!(),
    ", ",
    // Nobody timed the attempt: its node died holding it.
    "attempt_history = ",
    history_append!(
        abandoned_error!(),
        "v.node",
        "NULL::bigint",
        "now()",
        "(CASE WHEN j.attempts + 1 >= j.max_attempts THEN 'failed' ELSE 'pending' END)"
    ),
    ", ",
    "node_id = v.node, updated_at = now() ",
    "FROM (SELECT j2.id, a.node FROM {s}.jobs j2 ",
    "JOIN (SELECT u.id, r.node_id AS node, r.written_at AS since FROM ",
    "(SELECT node_id, ids, written_at FROM rec UNION ALL ",
    "SELECT node_id, ids, written_at FROM old) r, ",
    "unnest(r.ids) AS u(id)) AS a ON a.id = j2.id ",
    "WHERE (j2.status = 'pending') IS TRUE AND j2.updated_at < a.since ",
    "FOR UPDATE OF j2 SKIP LOCKED) AS v ",
    "WHERE j.id = v.id RETURNING j.status) ",
    "SELECT (SELECT count(*) FROM rec) + (SELECT count(*) FROM old) AS records, ",
    "ARRAY(SELECT status FROM charged) AS statuses"
);

pub const PRUNE: &str = "DELETE FROM {s}.jobs WHERE id IN (SELECT id FROM {s}.jobs \
    WHERE finished_at < now() - $1 * interval '1 millisecond' LIMIT $2)";

pub const PRUNE_BATCHES: &str = "DELETE FROM {s}.batches b \
    WHERE b.created_at < now() - $1 * interval '1 millisecond' \
    AND NOT EXISTS (SELECT 1 FROM {s}.jobs j WHERE j.batch_id = b.id)";

pub const GET_JOB: &str = "SELECT {cols} FROM {s}.jobs WHERE id = $1";

/// Filters are bind parameters that may be NULL, so the statement text never varies.
pub const LIST_JOBS: &str = "SELECT {cols} FROM {s}.jobs \
    WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR type = $2) \
    AND ($3::uuid IS NULL OR batch_id = $3) AND ($4::uuid IS NULL OR id > $4) \
    ORDER BY id LIMIT $5";

/// A retried job is due at once: the runners are told (the channel is the schema's name).
pub const RETRY_JOB: &str = "WITH r AS (UPDATE {s}.jobs SET status = 'pending', attempts = 0, \
    run_at = now(), finished_at = NULL, updated_at = now() \
    WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING {cols}) \
    SELECT r.*, pg_notify($2, '0') FROM r";

/// A pending job not in a chunk right now, or a running lease-mode job (its node hears of it
/// when it renews its leases and stops the processor).
pub const CANCEL_JOB: &str = "UPDATE {s}.jobs SET status = 'cancelled', \
    finished_at = now(), updated_at = now(), lease_until = NULL \
    WHERE id = (SELECT id FROM {s}.jobs WHERE id = $1 AND status IN ('pending', 'running') \
                FOR UPDATE SKIP LOCKED) RETURNING {cols}";

/// Batch progress from the open-jobs index: what is not pending, failed or cancelled (and
/// still exists) succeeded. Pruned jobs of a batch count as finished.
pub const BATCH: &str = "SELECT b.id, b.name, b.type, b.total, b.created_at, \
    b.total - count(j.id) AS succeeded, \
    count(j.id) FILTER (WHERE j.status = 'failed') AS failed, \
    count(j.id) FILTER (WHERE j.status = 'cancelled') AS cancelled \
    FROM {s}.batches b LEFT JOIN {s}.jobs j \
    ON j.batch_id = b.id AND j.status <> 'succeeded' \
    WHERE b.id = $1 GROUP BY b.id";

pub const RECENT_BATCHES: &str = "SELECT b.id, b.name, b.type, b.total, b.created_at, \
    b.total - count(j.id) AS succeeded, \
    count(j.id) FILTER (WHERE j.status = 'failed') AS failed, \
    count(j.id) FILTER (WHERE j.status = 'cancelled') AS cancelled \
    FROM (SELECT * FROM {s}.batches ORDER BY created_at DESC LIMIT $1) b \
    LEFT JOIN {s}.jobs j ON j.batch_id = b.id AND j.status <> 'succeeded' \
    GROUP BY b.id, b.name, b.type, b.total, b.created_at ORDER BY b.created_at DESC";

/// Counts by type and status: the folded `counts` plus the deltas not folded yet, read in
/// one statement (one snapshot), so each change is seen exactly once. Costs a few rows per
/// type, however many jobs the table holds (migration 0009).
pub const TYPE_COUNTS: &str = "SELECT type, \
    COALESCE(sum(n) FILTER (WHERE status = 'pending'), 0)::bigint AS pending, \
    COALESCE(sum(n) FILTER (WHERE status = 'running'), 0)::bigint AS running, \
    COALESCE(sum(n) FILTER (WHERE status = 'succeeded'), 0)::bigint AS succeeded, \
    COALESCE(sum(n) FILTER (WHERE status = 'failed'), 0)::bigint AS failed, \
    COALESCE(sum(n) FILTER (WHERE status = 'cancelled'), 0)::bigint AS cancelled \
    FROM (SELECT type, status, n FROM {s}.counts \
          UNION ALL SELECT type, status, n FROM {s}.count_deltas \
          WHERE status <> 'completed') c \
    GROUP BY type HAVING sum(n) <> 0 ORDER BY type";

/// The jobs table's upkeep: its live and dead rows, when it was last vacuumed, whether
/// autovacuum runs for it, and the age of the oldest transaction open elsewhere. `$1` is the
/// schema.
pub const TABLE_HEALTH: &str = "SELECT COALESCE(s.n_live_tup, 0) AS live_rows, \
    COALESCE(s.n_dead_tup, 0) AS dead_rows, \
    GREATEST(s.last_autovacuum, s.last_vacuum) AS last_vacuum, \
    current_setting('autovacuum')::bool AND COALESCE((SELECT option_value::bool \
        FROM pg_options_to_table(c.reloptions) WHERE option_name = 'autovacuum_enabled'), true) \
        AS autovacuum, \
    (SELECT extract(epoch FROM max(clock_timestamp() - a.xact_start))::float8 \
       FROM pg_stat_activity a WHERE a.xact_start IS NOT NULL \
       AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend') \
        AS oldest_transaction_secs \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
    WHERE n.nspname = $1 AND c.relname = 'jobs'";

/// Folds the count deltas into `counts`, one folder at a time per schema (`$1`): another
/// node's fold in progress makes this one a no-op rather than a wait (or a deadlock between
/// two folds upserting the same rows in different orders). Returns the deltas folded.
pub const FOLD_COUNTS: &str = "WITH turn AS \
    (SELECT pg_try_advisory_xact_lock(hashtext('skiplock.counts.' || $1)) AS mine), \
    d AS (DELETE FROM {s}.count_deltas WHERE (SELECT mine FROM turn) \
          RETURNING type, queue, status, n, at), \
    f AS (INSERT INTO {s}.counts (type, queue, status, n) \
          SELECT type, queue, status, sum(n) FROM d WHERE status <> 'completed' \
          GROUP BY type, queue, status \
          ON CONFLICT (type, queue, status) DO UPDATE SET n = counts.n + EXCLUDED.n), \
    t AS (INSERT INTO {s}.finished_per_second (second, n) \
          SELECT date_trunc('second', at), sum(n) FROM d \
          WHERE status IN ('succeeded', 'failed', 'cancelled', 'completed') AND n > 0 \
          GROUP BY 1 \
          ON CONFLICT (second) DO UPDATE SET n = finished_per_second.n + EXCLUDED.n), \
    old AS (DELETE FROM {s}.finished_per_second \
            WHERE (SELECT mine FROM turn) AND second < now() - interval '10 minutes') \
    SELECT count(*) FROM d";

pub const NODES: &str = "SELECT id, host, pid, concurrency, in_flight, processed, failed, \
    started_at, last_seen, queues, types FROM {s}.nodes \
    WHERE last_seen >= now() - $1 * interval '1 millisecond' OR {s}.node_connected(alive_key) \
    ORDER BY started_at, id";

/// Jobs finished in each of the last 30 ten-second buckets (bucket 0 is the oldest).
pub const THROUGHPUT: &str = "SELECT (29 - floor(extract(epoch FROM now() - f.at) / 10))::int \
    AS bucket, sum(f.n)::bigint AS n FROM \
    (SELECT second AS at, n FROM {s}.finished_per_second \
     WHERE second > now() - interval '301 seconds' \
     UNION ALL SELECT at, n FROM {s}.count_deltas \
     WHERE status IN ('succeeded', 'failed', 'cancelled', 'completed') AND n > 0) f \
    WHERE f.at > now() - interval '300 seconds' AND f.at <= now() GROUP BY 1";

/// A job with its attempt history, for the pages that show one job.
pub const GET_JOB_DETAIL: &str = "SELECT {cols}, attempt_history FROM {s}.jobs WHERE id = $1";

/// A bulk retry: up to `$4` failed or cancelled jobs matching the filters (NULL: any), locked
/// with SKIP LOCKED so that a concurrent bulk operation or prune is stepped around, not
/// waited for. The history stays; the attempt count starts again.
pub const RETRY_JOBS: &str = "WITH picked AS (SELECT id FROM {s}.jobs \
    WHERE status IN ('failed', 'cancelled') AND ($1::text IS NULL OR status = $1) \
    AND ($2::text IS NULL OR type = $2) AND ($3::uuid IS NULL OR batch_id = $3) \
    ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
    UPDATE {s}.jobs AS j SET status = 'pending', attempts = 0, run_at = now(), \
    finished_at = NULL, updated_at = now() \
    FROM picked WHERE j.id = picked.id RETURNING j.id, j.priority, j.queue";

/// A bulk cancel: up to `$3` pending jobs matching the filters. A job running right now has
/// its row locked by its chunk, so SKIP LOCKED leaves it alone (and does not wait for it).
pub const CANCEL_JOBS: &str = "WITH picked AS (SELECT id FROM {s}.jobs \
    WHERE status = 'pending' AND ($1::text IS NULL OR type = $1) \
    AND ($2::uuid IS NULL OR batch_id = $2) \
    ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
    UPDATE {s}.jobs AS j SET status = 'cancelled', finished_at = now(), updated_at = now() \
    FROM picked WHERE j.id = picked.id AND j.status = 'pending'";

/// One retention rule, one bounded delete: `$1` the age in milliseconds, `$2` the status,
/// `$3` the type (NULL: any type but those in `$4`), `$5` how many at most. The BRIN index on
/// `finished_at` narrows the scan to old rows.
pub const PRUNE_FINISHED: &str = "DELETE FROM {s}.jobs WHERE id IN (SELECT id FROM {s}.jobs \
    WHERE finished_at < now() - $1 * interval '1 millisecond' AND status = $2 \
    AND ($3::text IS NULL OR type = $3) AND NOT (type = ANY($4::text[])) LIMIT $5)";

/// Pending jobs by queue and type: the status report compares these against what the live
/// nodes can run. Read from the counts (migration 0013), like the counts by type: a few rows
/// whatever the backlog.
pub const PENDING_GROUPS: &str = "SELECT queue, type, sum(n)::bigint AS pending FROM \
    (SELECT type, queue, n FROM {s}.counts WHERE status = 'pending' \
     UNION ALL SELECT type, queue, n FROM {s}.count_deltas WHERE status = 'pending') c \
    GROUP BY queue, type HAVING sum(n) > 0 ORDER BY queue, type";

/// The earliest `run_at` among the pending jobs of queue `$1` and type `$2`, for a group no
/// live node can run. A plain `min(run_at)` reads the whole group (a second at a million
/// pending, on every report while no node runs); this walks the pending index instead: each
/// priority the queue holds (a skip from one to the next), and within it, in `run_at` order,
/// to the first job of the type. A queue of one type costs a few index reads per priority.
pub const OLDEST_PENDING: &str = "WITH RECURSIVE p AS ( \
    (SELECT priority FROM {s}.jobs WHERE status = 'pending' AND queue = $1 \
     ORDER BY priority DESC LIMIT 1) \
    UNION ALL \
    SELECT (SELECT j.priority FROM {s}.jobs j WHERE j.status = 'pending' AND j.queue = $1 \
            AND j.priority < p.priority ORDER BY j.priority DESC LIMIT 1) \
    FROM p WHERE p.priority IS NOT NULL) \
    SELECT min((SELECT j.run_at FROM {s}.jobs j WHERE j.status = 'pending' AND j.queue = $1 \
                AND j.priority = p.priority AND j.type = $2 \
                ORDER BY j.priority DESC, j.run_at LIMIT 1)) \
    FROM p WHERE p.priority IS NOT NULL";

/// Fails up to `$5` pending jobs of queue `$1` and type `$2` due for longer than `$4`
/// milliseconds, with the reason `$3`: no node has had a processor for the type for that long.
/// Jobs locked right now are stepped around.
pub const FAIL_UNRUNNABLE: &str = "UPDATE {s}.jobs SET status = 'failed', last_error = $3, \
    finished_at = now(), updated_at = now() \
    WHERE id IN (SELECT id FROM {s}.jobs WHERE status = 'pending' AND queue = $1 AND type = $2 \
                 AND run_at < now() - $4 * interval '1 millisecond' LIMIT $5 \
                 FOR UPDATE SKIP LOCKED) AND status = 'pending'";

/// A statement as the store runs it in `schema`: the job columns and the quoted schema
/// substituted. Public so that a plan can be checked (`EXPLAIN`) on the very text that runs.
pub fn qualify(statement: &str, schema: &str) -> String {
    statement
        .replace("{cols}", JOB_COLUMNS)
        .replace("{s}", &format!("\"{schema}\""))
}

/// Declares the statements' substituted copies once: a field per statement, filled from the
/// constant of the same name in upper case.
macro_rules! statements {
    ($($field:ident = $konst:ident,)*) => {
        /// The statements with the schema substituted, built once per store.
        pub(super) struct Statements {
            $(pub(super) $field: String,)*
        }

        impl Statements {
            pub(super) fn new(schema: &str) -> Self {
                Statements { $($field: qualify($konst, schema),)* }
            }
        }
    };
}

statements! {
    insert_batch_row = INSERT_BATCH_ROW,
    resolve_batch = RESOLVE_BATCH,
    pending_groups = PENDING_GROUPS,
    oldest_pending = OLDEST_PENDING,
    fail_unrunnable = FAIL_UNRUNNABLE,
    insert_jobs = INSERT_JOBS,
    set_traceparents = SET_TRACEPARENTS,
    lock_chunk = LOCK_CHUNK,
    xact_status = XACT_STATUS,
    record_outcomes = RECORD_OUTCOMES,
    publish_policy = PUBLISH_POLICY,
    unique_types = UNIQUE_TYPES,
    insert_keyed = INSERT_KEYED,
    set_batch_total = SET_BATCH_TOTAL,
    cron_marks = CRON_MARKS,
    cron_create = CRON_CREATE,
    cron_advance = CRON_ADVANCE,
    due_among = DUE_AMONG,
    claim_chunk = CLAIM_CHUNK,
    lease_jobs = LEASE_JOBS,
    complete_leases = COMPLETE_LEASES,
    extend_leases = EXTEND_LEASES,
    rescue_expired = RESCUE_EXPIRED,
    release_leases = RELEASE_LEASES,
    record_successes = RECORD_SUCCESSES,
    delete_succeeded = DELETE_SUCCEEDED,
    due_pending = DUE_PENDING,
    heartbeat = HEARTBEAT,
    remove_node = REMOVE_NODE,
    remove_holds = REMOVE_HOLDS,
    record_hold = RECORD_HOLD,
    prepare_hold = PREPARE_HOLD,
    hold_then_begin = HOLD_THEN_BEGIN,
    delete_dead_nodes = DELETE_DEAD_NODES,
    charge_abandoned = CHARGE_ABANDONED,
    prune = PRUNE,
    prune_batches = PRUNE_BATCHES,
    get_job = GET_JOB,
    list_jobs = LIST_JOBS,
    retry_job = RETRY_JOB,
    cancel_job = CANCEL_JOB,
    batch = BATCH,
    recent_batches = RECENT_BATCHES,
    type_counts = TYPE_COUNTS,
    fold_counts = FOLD_COUNTS,
    table_health = TABLE_HEALTH,
    nodes = NODES,
    throughput = THROUGHPUT,
    get_job_detail = GET_JOB_DETAIL,
    retry_jobs = RETRY_JOBS,
    cancel_jobs = CANCEL_JOBS,
    prune_finished = PRUNE_FINISHED,
}
