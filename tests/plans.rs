//! Plans that cannot flip: every statement on the hot path keeps its intended plan whatever
//! the planner's statistics say. Each scenario fills a fresh schema the way a real queue's
//! life does (finished history, then a burst), with statistics never gathered, gathered
//! between bursts (zero pending, zero running) or gathered during the burst, and checks
//! `EXPLAIN (FORMAT JSON)` of the very statement text the store runs, as a custom plan (the
//! first executions of a prepared statement) and as a generic one (what PostgreSQL may switch
//! to after five).

mod common;

use common::{Backend, TestStore};
use serde_json::Value;
use skiplock::store::postgres::sql;
use sqlx::PgPool;

/// Finished rows of history, and the burst that follows.
const FINISHED: i64 = 30_000;
const PENDING: i64 = 100_000;
const RUNNING: i64 = 20_000;

/// When the table's statistics were gathered.
#[derive(Debug, Clone, Copy)]
enum Stats {
    /// Never: a new installation.
    Never,
    /// Between bursts: history only, nothing pending or running (a healthy queue's normal state).
    Idle,
    /// During the burst.
    Burst,
}

/// How a statement must reach `jobs`.
#[derive(Debug)]
enum Want {
    /// Only through the primary key: it names its jobs by id.
    PrimaryKey,
    /// Through this partial index, in order: it looks for work (and then may reach the rows
    /// it found by primary key).
    Index(&'static str),
}

async fn fill(pool: &PgPool, schema: &str, stats: Stats) {
    let q = |s: &str| s.replace("{s}", &format!("\"{schema}\""));
    sqlx::query(&q(
        "INSERT INTO {s}.jobs (id, type, target, status, attempts, finished_at, \
         created_at, node_id) SELECT gen_random_uuid(), 'noop', '{}', 'succeeded', 1, \
         now() - interval '1 hour', now() - interval '1 hour', 'n' \
         FROM generate_series(1, $1)",
    ))
    .bind(FINISHED)
    .execute(pool)
    .await
    .unwrap();
    if matches!(stats, Stats::Idle) {
        sqlx::query(&q("ANALYZE {s}.jobs"))
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query(&q("INSERT INTO {s}.jobs (id, type, target) \
         SELECT gen_random_uuid(), 'noop', jsonb_build_object('n', i) \
         FROM generate_series(1, $1) i"))
    .bind(PENDING)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&q(
        "INSERT INTO {s}.jobs (id, type, target, status, attempts, node_id, \
         lease_until) SELECT gen_random_uuid(), 'sleep', '{}', 'running', 1, 'n', \
         now() + interval '1 hour' FROM generate_series(1, $1)",
    ))
    .bind(RUNNING)
    .execute(pool)
    .await
    .unwrap();
    if matches!(stats, Stats::Burst) {
        sqlx::query(&q("ANALYZE {s}.jobs"))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Every way the plan reaches `jobs`: `Seq Scan`, or the scan type and index name.
fn accesses(plan: &Value, out: &mut Vec<String>) {
    let node = plan["Node Type"].as_str().unwrap_or("");
    let relation = plan["Relation Name"].as_str();
    match node {
        "Seq Scan" | "Index Scan" | "Index Only Scan" | "Bitmap Heap Scan" | "Tid Scan"
            if relation == Some("jobs") =>
        {
            if let Some(index) = plan["Index Name"].as_str() {
                out.push(format!("{node} {index}"));
            } else if node != "Bitmap Heap Scan" {
                out.push(node.to_string());
            }
        }
        "Bitmap Index Scan" => {
            let index = plan["Index Name"].as_str().unwrap_or("");
            if index.starts_with("jobs_") {
                out.push(format!("{node} {index}"));
            }
        }
        _ => {}
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        accesses(child, out);
    }
}

/// `EXPLAIN` of `statement` (the store's text) executed with `args` (SQL expressions).
async fn explain(pool: &PgPool, statement: &str, args: &str, generic: bool) -> Vec<String> {
    let mode = if generic {
        "force_generic_plan"
    } else {
        "force_custom_plan"
    };
    explain_in(
        pool,
        &format!("SET plan_cache_mode = {mode}"),
        statement,
        args,
    )
    .await
}

/// [`explain`] on a session with `settings` applied first.
async fn explain_in(pool: &PgPool, settings: &str, statement: &str, args: &str) -> Vec<String> {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(&format!("{settings}; PREPARE plan_check AS {statement}"))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("PREPARE {statement}: {e}"));
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("({args})")
    };
    let (plan,): (Value,) =
        sqlx::query_as(&format!("EXPLAIN (FORMAT JSON) EXECUTE plan_check{args}"))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {statement}: {e}"));
    sqlx::raw_sql("DEALLOCATE plan_check; RESET ALL")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    accesses(&plan[0]["Plan"], &mut out);
    out
}

/// Whether a plan reaches `jobs` at all, and only through what `want` names (or the primary
/// key, which a partial-index statement may also use).
fn only_through(want: &Want, got: &[String]) -> bool {
    !got.is_empty()
        && got.iter().all(|a| match want {
            Want::PrimaryKey => a.ends_with(" jobs_pkey"),
            Want::Index(index) => a.ends_with(&format!(" {index}")) || a.ends_with(" jobs_pkey"),
        })
}

async fn check_all(stats: Stats) {
    let t = TestStore::new(Backend::Postgres).await;
    let pool = t.pg.clone().unwrap();
    let schema = t.schema.clone();
    fill(&pool, &schema, stats).await;
    let q = |s: &str| s.replace("{s}", &format!("\"{schema}\""));
    // Ids as a real chunk would carry them: pending ones, running ones.
    let pending: Vec<uuid::Uuid> = sqlx::query_scalar(&q(
        "SELECT id FROM {s}.jobs WHERE status = 'pending' ORDER BY id LIMIT 100",
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    let running: Vec<uuid::Uuid> = sqlx::query_scalar(&q(
        "SELECT id FROM {s}.jobs WHERE status = 'running' ORDER BY id LIMIT 100",
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    let arr = |ids: &[uuid::Uuid]| {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        format!("'{{{}}}'::uuid[]", list.join(","))
    };
    let n = pending.len();
    let texts = |v: &str| format!("array_fill({v}::text, ARRAY[{n}])");
    let p = arr(&pending);
    let r = arr(&running);
    let one = format!("'{}'::uuid", pending[0]);
    let outcomes = format!(
        "{p}, {}, array_fill(NULL::text, ARRAY[{n}]), array_fill(NULL::bigint, ARRAY[{n}]), 'n', \
         array_fill(1::bigint, ARRAY[{n}])",
        texts("'succeeded'")
    );
    let completes = format!(
        "{r}, {}, array_fill(NULL::text, ARRAY[{n}]), array_fill(NULL::bigint, ARRAY[{n}]), \
         array_fill(1, ARRAY[{n}]), 'n', array_fill(1::bigint, ARRAY[{n}])",
        texts("'succeeded'")
    );
    let cases: Vec<(&str, &str, String, Want)> = vec![
        (
            "lock",
            sql::LOCK_CHUNK,
            format!("{p}, 'default', '{{noop,sleep}}'::text[]"),
            Want::PrimaryKey,
        ),
        (
            "lease",
            sql::LEASE_JOBS,
            format!("{p}, 'n', 10000"),
            Want::PrimaryKey,
        ),
        (
            "successes",
            sql::RECORD_SUCCESSES,
            format!("{p}, 'n'"),
            Want::PrimaryKey,
        ),
        ("outcomes", sql::RECORD_OUTCOMES, outcomes, Want::PrimaryKey),
        (
            "complete leases",
            sql::COMPLETE_LEASES,
            completes,
            Want::PrimaryKey,
        ),
        (
            "extend leases",
            sql::EXTEND_LEASES,
            format!("{r}, 'n', 10000"),
            Want::PrimaryKey,
        ),
        (
            "release leases",
            sql::RELEASE_LEASES,
            format!("{r}, 'n'"),
            Want::PrimaryKey,
        ),
        ("due among", sql::DUE_AMONG, p.clone(), Want::PrimaryKey),
        (
            "charge abandoned",
            sql::CHARGE_ABANDONED,
            "60000::float8, 16::bigint".into(),
            Want::PrimaryKey,
        ),
        ("cancel", sql::CANCEL_JOB, one, Want::PrimaryKey),
        (
            "claim",
            sql::CLAIM_CHUNK,
            "100, 'default', '{noop,sleep}'::text[]".into(),
            Want::Index("jobs_queue_due_idx"),
        ),
        (
            "reconciler",
            sql::DUE_PENDING,
            "10000, 30000, 'default', '{noop,sleep}'::text[]".into(),
            Want::Index("jobs_queue_due_idx"),
        ),
        (
            "oldest pending of a group",
            sql::OLDEST_PENDING,
            "'default', 'noop'".into(),
            Want::Index("jobs_queue_due_idx"),
        ),
        (
            "rescue expired leases",
            sql::RESCUE_EXPIRED,
            String::new(),
            Want::Index("jobs_lease_idx"),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, statement, args, want) in &cases {
        let text = sql::qualify(statement, &schema);
        for generic in [false, true] {
            let got = explain(&pool, &text, args, generic).await;
            let ok = only_through(want, &got)
                && match want {
                    Want::PrimaryKey => true,
                    Want::Index(index) => got.iter().any(|a| a.ends_with(&format!(" {index}"))),
                };
            if !ok {
                let kind = if generic { "generic" } else { "custom" };
                wrong.push(format!("{name} ({kind} plan): wants {want:?}, got {got:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "statistics {stats:?}: plans that flipped:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_hold_on_statistics_never_gathered() {
    check_all(Stats::Never).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_hold_on_a_table_analysed_with_nothing_pending() {
    check_all(Stats::Idle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_hold_on_a_table_analysed_during_a_burst() {
    check_all(Stats::Burst).await;
}

/// A runner's generic plans are made at its first chunks and kept for its connection's life,
/// which on a new installation means on an empty table, never analysed: under the runner's
/// session settings each of its statements must still take its index there, or it would
/// keep a sequential scan as the table grows.
#[tokio::test(flavor = "multi_thread")]
async fn runner_plans_made_on_an_empty_table_take_their_index() {
    let t = TestStore::new(Backend::Postgres).await;
    let pool = t.pg.clone().unwrap();
    let ids = "'{00000000-0000-0000-0000-000000000000}'::uuid[]";
    let outcome = format!(
        "{ids}, '{{failed}}'::text[], '{{boom}}'::text[], '{{1}}'::bigint[], 'n', \
         '{{1}}'::bigint[]"
    );
    let complete = format!(
        "{ids}, '{{succeeded}}'::text[], '{{NULL}}'::text[], '{{NULL}}'::bigint[], \
         '{{1}}'::int[], 'n', '{{1}}'::bigint[]"
    );
    let cases: Vec<(&str, &str, String, Want)> = vec![
        (
            "lock",
            sql::LOCK_CHUNK,
            format!("{ids}, 'default', '{{noop}}'::text[]"),
            Want::PrimaryKey,
        ),
        (
            "claim",
            sql::CLAIM_CHUNK,
            "100, 'default', '{noop}'::text[]".into(),
            Want::Index("jobs_queue_due_idx"),
        ),
        (
            "successes",
            sql::RECORD_SUCCESSES,
            format!("{ids}, 'n'"),
            Want::PrimaryKey,
        ),
        ("outcomes", sql::RECORD_OUTCOMES, outcome, Want::PrimaryKey),
        (
            "delete succeeded",
            sql::DELETE_SUCCEEDED,
            ids.into(),
            Want::PrimaryKey,
        ),
        (
            "lease",
            sql::LEASE_JOBS,
            format!("{ids}, 'n', 10000"),
            Want::PrimaryKey,
        ),
        (
            "complete leases",
            sql::COMPLETE_LEASES,
            complete,
            Want::PrimaryKey,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, statement, args, want) in &cases {
        let text = sql::qualify(statement, &t.schema);
        let got = explain_in(&pool, sql::RUNNER_SESSION, &text, args).await;
        if !only_through(want, &got) {
            wrong.push(format!("{name}: wants {want:?}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "runner plans on an empty table:\n{}",
        wrong.join("\n")
    );
}
