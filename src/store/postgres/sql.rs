//! Every statement the PostgreSQL store runs, by name. `{s}` stands for the quoted schema and
//! is substituted once at start-up; user input only ever arrives as bind parameters.

pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    include_str!("../../../migrations/postgres/0001_init.sql"),
)];

pub const JOB_COLUMNS: &str = "id, type, target, status, attempts, max_attempts, run_at, \
    priority, batch_id, last_error, created_at, updated_at, finished_at, node_id";

pub const INSERT_BATCH_ROW: &str =
    "INSERT INTO {s}.batches (id, name, type, total) VALUES ($1, $2, $3, $4)";

/// One statement per chunk of a batch: the type and options are shared scalars.
pub const INSERT_BATCH_JOBS: &str = "INSERT INTO {s}.jobs \
    (id, type, target, max_attempts, run_at, priority, batch_id) \
    SELECT u.id, $2, u.target, $4, COALESCE($5, now()), $6, $7 \
    FROM UNNEST($1::uuid[], $3::jsonb[]) AS u(id, target)";

/// One statement per chunk of mixed jobs.
pub const INSERT_JOBS: &str = "INSERT INTO {s}.jobs \
    (id, type, target, max_attempts, run_at, priority) \
    SELECT u.id, u.type, u.target, u.max_attempts, COALESCE(u.run_at, now()), u.priority \
    FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::smallint[]) \
    AS u(id, type, target, max_attempts, run_at, priority)";

/// The heart of the design: lock the popped IDs that are still pending and due, skipping any
/// row another transaction holds. A duplicate or stale ID simply finds nothing.
pub const LOCK_CHUNK: &str = "SELECT {cols} FROM {s}.jobs \
    WHERE id = ANY($1) AND status = 'pending' AND run_at <= now() \
    FOR UPDATE SKIP LOCKED";

/// The common case, every job of the chunk succeeded: the same statement the raw SQL would run.
pub const RECORD_SUCCESSES: &str = "UPDATE {s}.jobs SET status = 'succeeded', \
    attempts = attempts + 1, finished_at = clock_timestamp(), updated_at = clock_timestamp(), \
    node_id = $2 WHERE id = ANY($1)";

/// Every outcome of a chunk in one statement. `j.id = ANY($1)` is redundant with the join but
/// lets the planner reach the rows through the primary key instead of hashing the table.
pub const RECORD_OUTCOMES: &str = "UPDATE {s}.jobs AS j SET \
    status = o.status, \
    attempts = j.attempts + 1, \
    last_error = COALESCE(o.error, j.last_error), \
    run_at = CASE WHEN o.delay_ms IS NULL THEN j.run_at \
                  ELSE clock_timestamp() + o.delay_ms * interval '1 millisecond' END, \
    finished_at = CASE WHEN o.status = 'pending' THEN NULL ELSE clock_timestamp() END, \
    updated_at = clock_timestamp(), \
    node_id = $5 \
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[]) AS o(id, status, error, delay_ms) \
    WHERE j.id = o.id AND j.id = ANY($1)";

pub const DUE_PENDING: &str = "SELECT id, priority FROM {s}.jobs \
    WHERE status = 'pending' AND run_at <= now() \
    ORDER BY priority DESC, run_at, id LIMIT $1";

pub const HEARTBEAT: &str = "INSERT INTO {s}.nodes \
    (id, host, pid, concurrency, in_flight, processed, failed, held, last_seen) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) \
    ON CONFLICT (id) DO UPDATE SET in_flight = EXCLUDED.in_flight, \
    processed = EXCLUDED.processed, failed = EXCLUDED.failed, held = EXCLUDED.held, \
    concurrency = EXCLUDED.concurrency, last_seen = now()";

pub const REMOVE_NODE: &str = "DELETE FROM {s}.nodes WHERE id = $1";

pub const REMOVE_HOLDS: &str = "DELETE FROM {s}.holds WHERE node_id = $1";

/// The intent record of a worker slot (see the `holds` table), then the chunk's own BEGIN: one
/// simple query, so one round trip. Its literals are UUIDs formatted by us and the node id
/// with quotes doubled. `synchronous_commit = off` because the record must survive the worker
/// process, not the database server.
pub const RECORD_HOLD: &str = "BEGIN; SET LOCAL synchronous_commit = off; \
    INSERT INTO {s}.holds (slot, node_id, ids) VALUES ('{slot}', '{node}', '{ids}') \
    ON CONFLICT (slot) DO UPDATE SET ids = EXCLUDED.ids, written_at = now(); COMMIT; BEGIN";

/// The intent records of dead nodes.
pub const TAKE_DEAD_HOLDS: &str = "DELETE FROM {s}.holds WHERE node_id = ANY($1) \
    RETURNING node_id, ids, written_at";

pub const DELETE_DEAD_NODES: &str = "DELETE FROM {s}.nodes \
    WHERE last_seen < now() - $1 * interval '1 millisecond' RETURNING id, held";

/// Charges an attempt to each abandoned job that is still pending and not locked by a node
/// that has picked it up since. Spent attempts end the job `failed`: a poison job.
pub const CHARGE_ABANDONED: &str = "UPDATE {s}.jobs AS j SET \
    attempts = j.attempts + 1, \
    status = CASE WHEN j.attempts + 1 >= j.max_attempts THEN 'failed' ELSE 'pending' END, \
    finished_at = CASE WHEN j.attempts + 1 >= j.max_attempts THEN now() END, \
    last_error = 'abandoned: node ' || v.node || ' stopped (killed or crashed) while running this job', \
    node_id = v.node, updated_at = now() \
    FROM (SELECT j2.id, a.node FROM {s}.jobs j2 \
          JOIN UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS a(id, node, since) \
          ON a.id = j2.id \
          WHERE j2.status = 'pending' AND (a.since IS NULL OR j2.updated_at < a.since) \
          FOR UPDATE OF j2 SKIP LOCKED) AS v \
    WHERE j.id = v.id RETURNING j.status";

pub const PRUNE: &str = "DELETE FROM {s}.jobs WHERE id IN (SELECT id FROM {s}.jobs \
    WHERE finished_at < now() - $1 * interval '1 millisecond' LIMIT 10000)";

pub const PRUNE_BATCHES: &str = "DELETE FROM {s}.batches b \
    WHERE b.created_at < now() - $1 * interval '1 millisecond' \
    AND NOT EXISTS (SELECT 1 FROM {s}.jobs j WHERE j.batch_id = b.id)";

pub const GET_JOB: &str = "SELECT {cols} FROM {s}.jobs WHERE id = $1";

/// Filters are bind parameters that may be NULL, so the statement text never varies.
pub const LIST_JOBS: &str = "SELECT {cols} FROM {s}.jobs \
    WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR type = $2) \
    AND ($3::uuid IS NULL OR batch_id = $3) AND ($4::uuid IS NULL OR id > $4) \
    ORDER BY id LIMIT $5";

pub const RETRY_JOB: &str = "UPDATE {s}.jobs SET status = 'pending', attempts = 0, \
    run_at = now(), finished_at = NULL, updated_at = now() \
    WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING {cols}";

pub const CANCEL_JOB: &str = "UPDATE {s}.jobs SET status = 'cancelled', \
    finished_at = now(), updated_at = now() \
    WHERE id = (SELECT id FROM {s}.jobs WHERE id = $1 AND status = 'pending' \
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

pub const TYPE_COUNTS: &str = "SELECT type, \
    count(*) FILTER (WHERE status = 'pending') AS pending, \
    count(*) FILTER (WHERE status = 'succeeded') AS succeeded, \
    count(*) FILTER (WHERE status = 'failed') AS failed, \
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled \
    FROM {s}.jobs GROUP BY type ORDER BY type";

pub const NODES: &str = "SELECT id, host, pid, concurrency, in_flight, processed, failed, \
    started_at, last_seen FROM {s}.nodes \
    WHERE last_seen >= now() - $1 * interval '1 millisecond' ORDER BY started_at, id";

/// Jobs finished in each of the last 30 ten-second buckets (bucket 0 is the oldest).
pub const THROUGHPUT: &str =
    "SELECT (29 - floor(extract(epoch FROM now() - finished_at) / 10))::int AS bucket, \
    count(*) AS n FROM {s}.jobs \
    WHERE finished_at > now() - interval '300 seconds' AND finished_at <= now() \
    GROUP BY 1";

/// The statements with the schema substituted, built once per store.
pub(super) struct Statements {
    pub(super) insert_batch_row: String,
    pub(super) insert_batch_jobs: String,
    pub(super) insert_jobs: String,
    pub(super) lock_chunk: String,
    pub(super) record_outcomes: String,
    pub(super) record_successes: String,
    pub(super) due_pending: String,
    pub(super) heartbeat: String,
    pub(super) remove_node: String,
    pub(super) remove_holds: String,
    pub(super) record_hold: String,
    pub(super) take_dead_holds: String,
    pub(super) delete_dead_nodes: String,
    pub(super) charge_abandoned: String,
    pub(super) prune: String,
    pub(super) prune_batches: String,
    pub(super) get_job: String,
    pub(super) list_jobs: String,
    pub(super) retry_job: String,
    pub(super) cancel_job: String,
    pub(super) batch: String,
    pub(super) recent_batches: String,
    pub(super) type_counts: String,
    pub(super) nodes: String,
    pub(super) throughput: String,
}

impl Statements {
    pub(super) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let f = |t: &str| t.replace("{cols}", JOB_COLUMNS).replace("{s}", &s);
        Statements {
            insert_batch_row: f(INSERT_BATCH_ROW),
            insert_batch_jobs: f(INSERT_BATCH_JOBS),
            insert_jobs: f(INSERT_JOBS),
            lock_chunk: f(LOCK_CHUNK),
            record_outcomes: f(RECORD_OUTCOMES),
            record_successes: f(RECORD_SUCCESSES),
            due_pending: f(DUE_PENDING),
            heartbeat: f(HEARTBEAT),
            remove_node: f(REMOVE_NODE),
            remove_holds: f(REMOVE_HOLDS),
            record_hold: f(RECORD_HOLD),
            take_dead_holds: f(TAKE_DEAD_HOLDS),
            delete_dead_nodes: f(DELETE_DEAD_NODES),
            charge_abandoned: f(CHARGE_ABANDONED),
            prune: f(PRUNE),
            prune_batches: f(PRUNE_BATCHES),
            get_job: f(GET_JOB),
            list_jobs: f(LIST_JOBS),
            retry_job: f(RETRY_JOB),
            cancel_job: f(CANCEL_JOB),
            batch: f(BATCH),
            recent_batches: f(RECENT_BATCHES),
            type_counts: f(TYPE_COUNTS),
            nodes: f(NODES),
            throughput: f(THROUGHPUT),
        }
    }
}
