//! Every statement the SQLite store runs, by name. Lists of values (IDs, rows to insert,
//! outcomes) arrive as one JSON text parameter read with `json_each`, SQLite's stand-in for
//! PostgreSQL's `UNNEST`; user input only ever arrives as bind parameters.
//!
//! Time is SQLite's clock in the fixed-width text form of `NOW` (see the migration), so the
//! comparisons below are plain text comparisons. Intervals arrive as SQLite date modifiers
//! such as `-10.000 seconds` (built by [`super::modifier`]).

/// The database's current time in the stored format.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    };
}

macro_rules! cols {
    () => {
        "id, type, target, status, attempts, max_attempts, run_at, priority, batch_id, \
         queue, last_error, created_at, updated_at, finished_at, node_id, traceparent"
    };
}

/// `jobs.attempt_history` with one failed attempt appended, kept to the newest 20
/// (`ATTEMPT_HISTORY_LEN`): one is appended at a time, so dropping the oldest at 20 keeps the
/// bound. Arguments are SQL expressions: the error, the node, the milliseconds it took, and
/// the status the job takes (`pending` is recorded as a `retry`).
macro_rules! history_append {
    ($error:expr, $node:expr, $took:expr, $status:expr) => {
        history_append!(@attempt "jobs.attempts + 1", $error, $node, $took, $status)
    };
    // `$attempt`: the attempt's number, when it is not the next one (lease mode charged it at
    // the claim).
    (@attempt $attempt:expr, $error:expr, $node:expr, $took:expr, $status:expr) => {
        concat!(
            "json_insert(CASE WHEN json_array_length(COALESCE(jobs.attempt_history, '[]')) >= 20 ",
            "THEN json_remove(jobs.attempt_history, '$[0]') ",
            "ELSE COALESCE(jobs.attempt_history, '[]') END, '$[#]', json_object(",
            "'attempt', ",
            $attempt,
            ", ",
            "'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ",
            "'node', ",
            $node,
            ", 'took_ms', ",
            $took,
            ", 'error', ",
            $error,
            ", 'outcome', CASE WHEN ",
            $status,
            " = 'pending' THEN 'retry' ELSE ",
            $status,
            " END))"
        )
    };
}

pub const INSERT_BATCH_ROW: &str = concat!(
    "INSERT INTO batches (id, name, type, total, created_at) VALUES ($1, $2, $3, $4, ",
    now!(),
    ")"
);

/// A batch's queue, resolved once before its rows go in: its own (`$1`), else its type's
/// (`$2`), else `default`.
pub const RESOLVE_QUEUE: &str =
    "SELECT COALESCE($1, (SELECT t.queue FROM job_types t WHERE t.type = $2), 'default')";

/// One statement per chunk of a batch: `$1` is `[[id, target JSON text], …]`; the type and
/// options are shared scalars, `$7` the queue [`RESOLVE_QUEUE`] found.
pub const INSERT_BATCH_JOBS: &str = concat!(
    "INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, queue, ",
    "traceparent, created_at, updated_at) ",
    "SELECT value ->> 0, $2, value ->> 1, ",
    "COALESCE($3, (SELECT t.max_attempts FROM job_types t WHERE t.type = $2), 3), COALESCE($4, ",
    now!(),
    "), $5, $6, $7, $8, ",
    now!(),
    ", ",
    now!(),
    " FROM json_each($1) ORDER BY key"
);

/// One statement per chunk of mixed jobs: `$1` is
/// `[[id, type, target JSON text, max_attempts, run_at or null, priority, queue or null], …]`.
/// Returns each job's queue (its own, its type's or `default`), for the push after commit.
pub const INSERT_JOBS: &str = concat!(
    "INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, queue, traceparent, ",
    "created_at, updated_at) ",
    "SELECT value ->> 0, value ->> 1, value ->> 2, ",
    "COALESCE(value ->> 3, (SELECT t.max_attempts FROM job_types t WHERE t.type = value ->> 1), 3), ",
    "COALESCE(value ->> 4, ",
    now!(),
    "), value ->> 5, ",
    "COALESCE(value ->> 6, (SELECT t.queue FROM job_types t WHERE t.type = value ->> 1), 'default'), ",
    "value ->> 7, ",
    now!(),
    ", ",
    now!(),
    " FROM json_each($1) WHERE true ORDER BY key RETURNING id, queue"
);

/// The heart of the design, SQLite edition. There is no `FOR UPDATE SKIP LOCKED`: SQLite
/// locks the whole database for writing, and the store runs this inside a `BEGIN IMMEDIATE`
/// transaction that it holds (with its in-process write turn) until the chunk commits.
/// No other transaction, in this process or another, can change these rows before then, so
/// "pending and due, read inside the write transaction" is exactly the guarantee that
/// PostgreSQL's row lock gives: a duplicate or stale ID finds nothing. So does an ID of
/// another queue than `$4` or of a type not in `$5` (a JSON array): it stays pending.
/// `$3` is the popped IDs (a JSON array).
///
/// The popped IDs drive the loop (`CROSS JOIN` fixes SQLite's join order), each a primary-key
/// lookup: written as `id IN (…) AND queue = $4`, the planner chose the partial index of
/// pending jobs by queue and read the whole backlog for every chunk.
macro_rules! lock_chunk {
    () => {
        concat!(
            "SELECT ",
            cols!(),
            " FROM (SELECT DISTINCT value AS popped FROM json_each($3)) AS p ",
            "CROSS JOIN jobs ON jobs.id = p.popped ",
            "WHERE status = 'pending' AND queue = $4 AND type IN (SELECT value FROM json_each($5)) ",
            "AND run_at <= ",
            now!()
        )
    };
}

/// A chunk's start, in one message to the connection: a runner slot's intent record
/// (`$1` slot, `$2` node, `$3` the popped IDs) committed on its own, so that it outlives a
/// crash mid-job; then the chunk's transaction, whose first statement deletes that record
/// again (a crash rolls the delete back and the record convicts; a commit, the chunk's or one
/// a processor sneaked in, makes it stick, which is how a broken chunk learns it committed);
/// then the lock ([`lock_chunk`], `$4` queue, `$5` types).
pub const START_CHUNK: &str = concat!(
    "BEGIN IMMEDIATE; ",
    "INSERT INTO holds (slot, node_id, ids, written_at) VALUES ($1, $2, $3, ",
    now!(),
    ") ON CONFLICT (slot) DO UPDATE SET ids = excluded.ids, written_at = excluded.written_at; ",
    "COMMIT; BEGIN IMMEDIATE; DELETE FROM holds WHERE slot = $1; ",
    lock_chunk!()
);

/// A transaction for a chunk with nothing to lock (a lease-mode completion).
pub const BEGIN_CHUNK: &str = "BEGIN IMMEDIATE";

pub const COMMIT: &str = "COMMIT";

/// Undoes a chunk that will not commit. "No transaction is active" is as good.
pub const ROLLBACK: &str = "ROLLBACK";

/// Whether a slot's intent record is still there (see [`START_CHUNK`]).
pub const HOLD_EXISTS: &str = "SELECT count(*) FROM holds WHERE slot = $1";

pub const REMOVE_HOLDS: &str = "DELETE FROM holds WHERE node_id = $1";

/// Lease mode's claim, in the chunk's transaction. `$1` ids (JSON), `$2` node, `$3` the lease
/// length as a date modifier.
pub const LEASE_JOBS: &str = concat!(
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, node_id = $2, ",
    "lease_until = strftime('%Y-%m-%d %H:%M:%f', 'now', $3), updated_at = ",
    now!(),
    " WHERE id IN (SELECT value FROM json_each($1)) AND status = 'pending'"
);

/// Lease mode's outcomes, fenced by attempt and node: `$1` is
/// `[[id, status, error, delay_ms, attempt, took_ms], …]`, `$2` the node. A failure appends
/// to the job's history, numbered with the attempt the claim charged.
pub const COMPLETE_LEASES: &str = concat!(
    "UPDATE jobs SET status = o.value ->> 1, ",
    "last_error = COALESCE(o.value ->> 2, jobs.last_error), ",
    "attempt_history = CASE WHEN o.value ->> 2 IS NULL THEN jobs.attempt_history ELSE ",
    history_append!(
        @attempt "jobs.attempts",
        "o.value ->> 2",
        "$2",
        "o.value ->> 5",
        "(o.value ->> 1)"
    ),
    " END, ",
    "run_at = CASE WHEN o.value ->> 3 IS NULL THEN jobs.run_at ",
    "ELSE strftime('%Y-%m-%d %H:%M:%f', 'now', ((o.value ->> 3) / 1000.0) || ' seconds') END, ",
    "finished_at = CASE WHEN o.value ->> 1 = 'pending' THEN NULL ELSE ",
    now!(),
    " END, lease_until = NULL, updated_at = ",
    now!(),
    " FROM json_each($1) AS o WHERE jobs.id = o.value ->> 0 AND jobs.status = 'running' ",
    "AND jobs.attempts = o.value ->> 4 AND jobs.node_id = $2 RETURNING jobs.id"
);

/// A node renews its leases; what comes back is what it still holds.
pub const EXTEND_LEASES: &str = concat!(
    "UPDATE jobs SET lease_until = strftime('%Y-%m-%d %H:%M:%f', 'now', $3) ",
    "WHERE id IN (SELECT value FROM json_each($1)) AND status = 'running' AND node_id = $2 ",
    "RETURNING id"
);

/// Leases given back at shutdown: `$1` ids (JSON), `$2` node.
pub const RELEASE_LEASES: &str = concat!(
    "UPDATE jobs SET status = 'pending', attempts = max(attempts - 1, 0), run_at = ",
    now!(),
    ", lease_until = NULL, updated_at = ",
    now!(),
    " WHERE id IN (SELECT value FROM json_each($1)) AND status = 'running' AND node_id = $2"
);

/// Expired leases: their node stopped renewing them.
pub const RESCUE_EXPIRED: &str = concat!(
    "UPDATE jobs SET ",
    "status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, ",
    "finished_at = CASE WHEN attempts >= max_attempts THEN ",
    now!(),
    " END, run_at = ",
    now!(),
    ", lease_until = NULL, updated_at = ",
    now!(),
    ", last_error = 'lease expired: node ' || COALESCE(node_id, '?') || ",
    "' stopped renewing it (killed, paused or cut off) while running this job' ",
    "WHERE status = 'running' AND lease_until < ",
    now!(),
    " RETURNING status"
);

/// Successes whose type keeps succeeded jobs for zero time: deleted in the chunk's write
/// turn. `$1` is a JSON array of ids.
pub const DELETE_SUCCEEDED: &str = "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each($1))";

/// The completions a [`DELETE_SUCCEEDED`] removed, for the report's throughput (`$1` how
/// many), and the per-second rows older than ten minutes dropped.
pub const COUNT_COMPLETIONS: &str = "INSERT INTO completions_per_second (second, n) \
    VALUES (CAST(strftime('%s', 'now') AS INTEGER), $1) \
    ON CONFLICT (second) DO UPDATE SET n = n + excluded.n";
pub const PRUNE_COMPLETIONS: &str = "DELETE FROM completions_per_second \
    WHERE second < CAST(strftime('%s', 'now') AS INTEGER) - 600";

/// Every outcome of a chunk in one statement: `$1` is
/// `[[id, status, error, delay_ms, took_ms], …]`. A failure (an outcome with an error) also
/// appends its attempt to the job's history; a success leaves the history as it is.
macro_rules! record_outcomes {
    () => {
        concat!(
            "UPDATE jobs SET ",
            "status = o.value ->> 1, ",
            "attempts = jobs.attempts + 1, ",
            "last_error = COALESCE(o.value ->> 2, jobs.last_error), ",
            "attempt_history = CASE WHEN o.value ->> 2 IS NULL THEN jobs.attempt_history ELSE ",
            history_append!("o.value ->> 2", "$2", "o.value ->> 4", "(o.value ->> 1)"),
            " END, ",
            "run_at = CASE WHEN o.value ->> 3 IS NULL THEN jobs.run_at ",
            "ELSE strftime('%Y-%m-%d %H:%M:%f', 'now', ((o.value ->> 3) / 1000.0) || ' seconds') END, ",
            "finished_at = CASE WHEN o.value ->> 1 = 'pending' THEN NULL ELSE ",
            now!(),
            " END, ",
            "updated_at = ",
            now!(),
            ", node_id = $2 ",
            "FROM json_each($1) AS o WHERE jobs.id = o.value ->> 0 AND jobs.status = 'pending'"
        )
    };
}

pub const RECORD_OUTCOMES: &str = record_outcomes!();

/// [`RECORD_OUTCOMES`] and the chunk's commit, in one message.
pub const RECORD_OUTCOMES_AND_COMMIT: &str = concat!(record_outcomes!(), "; COMMIT");

/// Pending, due jobs for the queue, without those a live node's runner has recorded it is
/// running (`$2`, a negative modifier, is the node timeout).
/// Only queue `$3` and the types in `$4` (a JSON array), from `jobs_queue_due_idx`.
pub const DUE_PENDING: &str = concat!(
    "SELECT id, priority, queue FROM jobs WHERE status = 'pending' AND queue = $3 ",
    "AND type IN (SELECT value FROM json_each($4)) AND run_at <= ",
    now!(),
    " AND id NOT IN (SELECT u.value FROM holds h JOIN nodes n ON n.id = h.node_id, ",
    "json_each(h.ids) AS u WHERE n.last_seen >= strftime('%Y-%m-%d %H:%M:%f', 'now', $2))",
    " ORDER BY priority DESC, run_at, id LIMIT $1"
);

/// Of `$1` (a JSON array of IDs), the jobs pending and due, with their priority.
pub const DUE_AMONG: &str = concat!(
    "SELECT id, priority, queue FROM jobs WHERE id IN (SELECT value FROM json_each($1)) ",
    "AND status = 'pending' AND run_at <= ",
    now!()
);

/// The most urgent pending, due jobs of queue `$2` and the types in `$3` (a JSON array): a
/// claim reads them with the store's write turn held (so no chunk of this process holds
/// them), then locks them as popped IDs are locked. `jobs_queue_due_idx` (queue, priority
/// DESC, run_at, id) gives this order within the queue: other queues are never read.
pub const CLAIMABLE: &str = concat!(
    "SELECT id FROM jobs WHERE status = 'pending' AND queue = $2 ",
    "AND type IN (SELECT value FROM json_each($3)) AND run_at <= ",
    now!(),
    " ORDER BY priority DESC, run_at, id LIMIT $1"
);

/// Publishes the type policy: `$1` is `[[type, max_attempts, unique fields or null,
/// unique window ms or null, queue or null], …]`.
pub const PUBLISH_POLICY: &str = concat!(
    "INSERT INTO job_types (type, max_attempts, unique_fields, unique_for_ms, queue, ",
    "updated_at) ",
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ",
    now!(),
    " FROM json_each($1) WHERE true ",
    "ON CONFLICT (type) DO UPDATE SET max_attempts = excluded.max_attempts, ",
    "unique_fields = excluded.unique_fields, unique_for_ms = excluded.unique_for_ms, ",
    "queue = excluded.queue, ",
    "updated_at = excluded.updated_at WHERE job_types.max_attempts <> excluded.max_attempts ",
    "OR job_types.unique_fields IS NOT excluded.unique_fields ",
    "OR job_types.unique_for_ms IS NOT excluded.unique_for_ms ",
    "OR job_types.queue IS NOT excluded.queue"
);

pub const HEARTBEAT: &str = concat!(
    "INSERT INTO nodes (id, host, pid, concurrency, in_flight, processed, failed, ",
    "started_at, last_seen, queues, types) VALUES ($1, $2, $3, $4, $5, $6, $7, ",
    now!(),
    ", ",
    now!(),
    ", $8, $9) ON CONFLICT (id) DO UPDATE SET in_flight = excluded.in_flight, ",
    "processed = excluded.processed, failed = excluded.failed, ",
    "concurrency = excluded.concurrency, last_seen = excluded.last_seen"
);

pub const REMOVE_NODE: &str = "DELETE FROM nodes WHERE id = $1";

pub const DELETE_DEAD_NODES: &str =
    "DELETE FROM nodes WHERE last_seen < strftime('%Y-%m-%d %H:%M:%f', 'now', $1)";

/// An intent record is abandoned when it is older than the node timeout (`$1`, a negative
/// modifier) and its node has not heartbeat within it.
macro_rules! abandoned {
    () => {
        "h.written_at < strftime('%Y-%m-%d %H:%M:%f', 'now', $1) AND NOT EXISTS \
         (SELECT 1 FROM nodes n WHERE n.id = h.node_id \
          AND n.last_seen >= strftime('%Y-%m-%d %H:%M:%f', 'now', $1))"
    };
}

/// The error an abandoned attempt is charged with.
macro_rules! abandoned_error {
    () => {
        "('abandoned: node ' || a.node || ' stopped (killed or crashed) while running this job')"
    };
}

/// Charges an attempt to each job an abandoned intent record names that is still pending and
/// untouched since the record was written (at millisecond resolution, so "not after": a record
/// whose chunk committed is gone with that commit, so the same millisecond cannot hide one). Nothing else holds them: this runs in a write
/// transaction, so no chunk is open. Spent attempts end the job `failed`: a poison job.
pub const CHARGE_ABANDONED: &str = concat!(
    "UPDATE jobs SET attempts = jobs.attempts + 1, ",
    "status = CASE WHEN jobs.attempts + 1 >= jobs.max_attempts THEN 'failed' ELSE 'pending' END, ",
    "finished_at = CASE WHEN jobs.attempts + 1 >= jobs.max_attempts THEN ",
    now!(),
    " END, ",
    "last_error = ",
    abandoned_error!(),
    ", ",
    // Nobody timed the attempt: its node died holding it.
    "attempt_history = ",
    history_append!(
        abandoned_error!(),
        "a.node",
        "NULL",
        "(CASE WHEN jobs.attempts + 1 >= jobs.max_attempts THEN 'failed' ELSE 'pending' END)"
    ),
    ", ",
    "node_id = a.node, updated_at = ",
    now!(),
    " FROM (SELECT u.value AS id, h.node_id AS node, h.written_at AS since ",
    "FROM holds h, json_each(h.ids) AS u WHERE ",
    abandoned!(),
    ") AS a WHERE jobs.id = a.id AND jobs.status = 'pending' AND jobs.updated_at <= a.since ",
    "RETURNING status"
);

/// The abandoned records, once their jobs are charged (same write transaction).
pub const DELETE_ABANDONED: &str = concat!("DELETE FROM holds AS h WHERE ", abandoned!());

pub const PRUNE: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
    WHERE finished_at < strftime('%Y-%m-%d %H:%M:%f', 'now', $1) LIMIT $2)";

pub const PRUNE_BATCHES: &str = "DELETE FROM batches \
    WHERE created_at < strftime('%Y-%m-%d %H:%M:%f', 'now', $1) \
    AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = batches.id)";

pub const GET_JOB: &str = concat!("SELECT ", cols!(), " FROM jobs WHERE id = $1");

/// Filters are bind parameters that may be NULL, so the statement text never varies.
pub const LIST_JOBS: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR type = $2) ",
    "AND ($3 IS NULL OR batch_id = $3) AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
);

pub const RETRY_JOB: &str = concat!(
    "UPDATE jobs SET status = 'pending', attempts = 0, run_at = ",
    now!(),
    ", finished_at = NULL, updated_at = ",
    now!(),
    " WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING ",
    cols!()
);

pub const CANCEL_JOB: &str = concat!(
    "UPDATE jobs SET status = 'cancelled', lease_until = NULL, finished_at = ",
    now!(),
    ", updated_at = ",
    now!(),
    " WHERE id = $1 AND status IN ('pending', 'running') RETURNING ",
    cols!()
);

/// As on PostgreSQL: what is not pending, failed or cancelled (and still exists) succeeded,
/// so pruned jobs of a batch count as finished.
pub const BATCH: &str = "SELECT b.id, b.name, b.type, b.total, b.created_at, \
    b.total - count(j.id) AS succeeded, \
    count(j.id) FILTER (WHERE j.status = 'failed') AS failed, \
    count(j.id) FILTER (WHERE j.status = 'cancelled') AS cancelled \
    FROM batches b LEFT JOIN jobs j ON j.batch_id = b.id AND j.status <> 'succeeded' \
    WHERE b.id = $1 GROUP BY b.id";

pub const RECENT_BATCHES: &str = "SELECT b.id, b.name, b.type, b.total, b.created_at, \
    b.total - count(j.id) AS succeeded, \
    count(j.id) FILTER (WHERE j.status = 'failed') AS failed, \
    count(j.id) FILTER (WHERE j.status = 'cancelled') AS cancelled \
    FROM (SELECT * FROM batches ORDER BY created_at DESC, id DESC LIMIT $1) b \
    LEFT JOIN jobs j ON j.batch_id = b.id AND j.status <> 'succeeded' \
    GROUP BY b.id, b.name, b.type, b.total, b.created_at \
    ORDER BY b.created_at DESC, b.id DESC";

/// Counts by type and status, kept current by the jobs table's triggers (migration 0009):
/// a few rows per type, however many jobs the table holds.
pub const TYPE_COUNTS: &str = "SELECT type, \
    COALESCE(sum(n) FILTER (WHERE status = 'pending'), 0) AS pending, \
    COALESCE(sum(n) FILTER (WHERE status = 'running'), 0) AS running, \
    COALESCE(sum(n) FILTER (WHERE status = 'succeeded'), 0) AS succeeded, \
    COALESCE(sum(n) FILTER (WHERE status = 'failed'), 0) AS failed, \
    COALESCE(sum(n) FILTER (WHERE status = 'cancelled'), 0) AS cancelled \
    FROM counts GROUP BY type HAVING sum(n) <> 0 ORDER BY type";

pub const NODES: &str = "SELECT id, host, pid, concurrency, in_flight, processed, failed, \
    started_at, last_seen, queues, types FROM nodes \
    WHERE last_seen >= strftime('%Y-%m-%d %H:%M:%f', 'now', $1) ORDER BY started_at, id";

/// Jobs finished in each of the last 30 ten-second buckets (bucket 0 is the oldest).
pub const THROUGHPUT: &str = concat!(
    "SELECT bucket, sum(n) AS n FROM (",
    "SELECT 29 - CAST((julianday('now') - julianday(finished_at)) * 8640 AS INTEGER) ",
    "AS bucket, count(*) AS n FROM jobs ",
    "WHERE finished_at > strftime('%Y-%m-%d %H:%M:%f', 'now', '-300 seconds') ",
    "AND finished_at <= ",
    now!(),
    " GROUP BY 1 UNION ALL ",
    "SELECT 29 - CAST((CAST(strftime('%s', 'now') AS INTEGER) - second) / 10 AS INTEGER), n ",
    "FROM completions_per_second ",
    "WHERE second > CAST(strftime('%s', 'now') AS INTEGER) - 300) GROUP BY bucket"
);

/// A job with its attempt history, for the pages that show one job.
pub const GET_JOB_DETAIL: &str = concat!(
    "SELECT ",
    cols!(),
    ", attempt_history FROM jobs WHERE id = $1"
);

/// A bulk retry: up to `$4` failed or cancelled jobs matching the filters (NULL: any). No
/// chunk ever holds a finished job, so nothing here can be running. The history stays; the
/// attempt count starts again.
pub const RETRY_JOBS: &str = concat!(
    "UPDATE jobs SET status = 'pending', attempts = 0, run_at = ",
    now!(),
    ", finished_at = NULL, updated_at = ",
    now!(),
    " WHERE id IN (SELECT id FROM jobs WHERE status IN ('failed', 'cancelled') ",
    "AND ($1 IS NULL OR status = $1) AND ($2 IS NULL OR type = $2) ",
    "AND ($3 IS NULL OR batch_id = $3) ORDER BY id LIMIT $4) RETURNING id, priority, queue"
);

/// A bulk cancel: up to `$4` pending jobs matching the filters, except those in `$3` (a JSON
/// array of the IDs this store's chunks hold: the jobs running right now).
pub const CANCEL_JOBS: &str = concat!(
    "UPDATE jobs SET status = 'cancelled', finished_at = ",
    now!(),
    ", updated_at = ",
    now!(),
    " WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' ",
    "AND ($1 IS NULL OR type = $1) AND ($2 IS NULL OR batch_id = $2) ",
    "AND id NOT IN (SELECT value FROM json_each($3)) ORDER BY id LIMIT $4)"
);

/// One retention rule, one bounded delete: `$1` the age as a negative modifier, `$2` the
/// status, `$3` the type (NULL: any type but those in the JSON array `$4`), `$5` how many.
pub const PRUNE_FINISHED: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
    WHERE finished_at < strftime('%Y-%m-%d %H:%M:%f', 'now', $1) AND status = $2 \
    AND ($3 IS NULL OR type = $3) AND type NOT IN (SELECT value FROM json_each($4)) LIMIT $5)";

/// Pending jobs by queue and type, from the counts the triggers keep (migration 0014).
pub const PENDING_GROUPS: &str = "SELECT queue, type, sum(n) AS pending FROM counts \
    WHERE status = 'pending' GROUP BY queue, type HAVING sum(n) > 0 ORDER BY queue, type";

/// The earliest `run_at` among the pending jobs of queue `$1` and type `$2`, by the walk the
/// PostgreSQL store describes: each priority of the queue, then `run_at` order to the first
/// job of the type, all in the pending index.
pub const OLDEST_PENDING: &str = "WITH RECURSIVE p(priority) AS ( \
    SELECT max(priority) FROM jobs WHERE status = 'pending' AND queue = $1 \
    UNION ALL \
    SELECT (SELECT max(j.priority) FROM jobs j WHERE j.status = 'pending' AND j.queue = $1 \
            AND j.priority < p.priority) \
    FROM p WHERE p.priority IS NOT NULL) \
    SELECT min((SELECT j.run_at FROM jobs j WHERE j.status = 'pending' AND j.queue = $1 \
                AND j.priority = p.priority AND j.type = $2 \
                ORDER BY j.priority DESC, j.run_at LIMIT 1)) AS since \
    FROM p WHERE p.priority IS NOT NULL";

/// Fails up to `$5` pending jobs of queue `$1` and type `$2` due before `$4` (a negative
/// modifier), with the reason `$3`, except those in `$6` (a JSON array of the IDs this
/// store's chunks hold).
pub const FAIL_UNRUNNABLE: &str = concat!(
    "UPDATE jobs SET status = 'failed', last_error = $3, finished_at = ",
    now!(),
    ", updated_at = ",
    now!(),
    " WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' AND queue = $1 AND type = $2 ",
    "AND run_at < strftime('%Y-%m-%d %H:%M:%f', 'now', $4) ",
    "AND id NOT IN (SELECT value FROM json_each($6)) LIMIT $5)"
);

/// Of the types in `$1` (a JSON array), those with a unique policy: their key fields (JSON
/// array text, or NULL) and window in milliseconds (or NULL).
pub const UNIQUE_POLICIES: &str = "SELECT type, unique_fields, unique_for_ms FROM job_types \
    WHERE type IN (SELECT value FROM json_each($1)) \
    AND (unique_fields IS NOT NULL OR unique_for_ms IS NOT NULL)";

/// The open job (pending, or running in lease mode) with this type and key, if any, and its
/// queue (keys are per type, whatever the queue).
pub const OPEN_WITH_KEY: &str = "SELECT id, queue FROM jobs WHERE type = $1 \
    AND unique_key = $2 AND status IN ('pending', 'running')";

/// The latest job with this type and key if it was created after `now` moved by `$3` (a
/// negative date modifier: the window).
pub const KEY_WITHIN: &str = concat!(
    "SELECT k.job_id, COALESCE((SELECT j.queue FROM jobs j WHERE j.id = k.job_id), 'default') ",
    "FROM unique_keys k WHERE k.type = $1 AND k.unique_key = $2 ",
    "AND k.created_at > strftime('%Y-%m-%d %H:%M:%f', 'now', $3)"
);

/// The key's row names its latest job.
pub const CLAIM_KEY: &str = concat!(
    "INSERT INTO unique_keys (type, unique_key, job_id, created_at) VALUES ($1, $2, $3, ",
    now!(),
    ") ON CONFLICT (type, unique_key) DO UPDATE SET job_id = excluded.job_id, ",
    "created_at = excluded.created_at"
);

/// One keyed job; the type's policy for max_attempts and queue as in [`INSERT_JOBS`].
/// Returns the queue it went into.
pub const INSERT_KEYED_JOB: &str = concat!(
    "INSERT INTO jobs (id, type, target, max_attempts, run_at, priority, batch_id, unique_key, ",
    "queue, traceparent, created_at, updated_at) VALUES ($1, $2, $3, ",
    "COALESCE($4, (SELECT t.max_attempts FROM job_types t WHERE t.type = $2), 3), COALESCE($5, ",
    now!(),
    "), $6, $7, $8, ",
    "COALESCE($9, (SELECT t.queue FROM job_types t WHERE t.type = $2), 'default'), $10, ",
    now!(),
    ", ",
    now!(),
    ") RETURNING queue"
);

/// A batch counts the jobs it holds: duplicates are not among them.
pub const SET_BATCH_TOTAL: &str = "UPDATE batches SET total = $2 WHERE id = $1";

/// Cron entries' marks (see the PostgreSQL store's statements of the same names).
pub const CRON_MARKS: &str = "SELECT name, last_tick FROM cron ORDER BY name";

pub const CRON_CREATE: &str =
    "INSERT INTO cron (name, last_tick) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

/// Compare-and-set, inside the write transaction (which no other writer can interleave with).
pub const CRON_ADVANCE: &str = concat!(
    "UPDATE cron SET last_tick = $3, updated_at = ",
    now!(),
    " WHERE name = $1 AND last_tick = $2 AND $3 > last_tick"
);
