//! The operators' CLI: `jobs show` with the attempt history, `jobs retry|cancel` by ID or by
//! filter, and the retention settings, refused at start-up when they make no sense.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use skiplock::store::{BatchOptions, Outcome};
use uuid::Uuid;

use common::{Backend, TestStore};

fn run_env(ts: &TestStore, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(common::bin())
        .args(ts.cli_args())
        .args(args)
        .env("SKIPLOCK_LOG", "warn")
        .env_remove("SKIPLOCK_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn run(ts: &TestStore, args: &[&str]) -> Output {
    run_env(ts, args, &[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails with a message on stderr containing `needle`.
fn refused(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "succeeded; stdout: {}",
        text(&out.stdout)
    );
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
}

/// A batch of `n` noop jobs, failed through the store as a worker would.
async fn failed_batch(ts: &TestStore, n: usize) -> (Uuid, Vec<Uuid>) {
    let sub = ts
        .store
        .insert_batch(
            "noop",
            (0..n).map(|i| json!(i)).collect(),
            BatchOptions::default(),
        )
        .await
        .unwrap();
    let mut slot = ts.store.slot("node-cli", &common::scope()).await.unwrap();
    let chunk = slot.lock(&sub.ids).await.unwrap();
    let outs: Vec<Outcome> = sub
        .ids
        .iter()
        .map(|&id| Outcome::Failed {
            id,
            error: "refused by upstream".into(),
            took: Duration::from_millis(30),
        })
        .collect();
    chunk.finish(&outs).await.unwrap();
    (sub.batch_id.unwrap(), sub.ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_retry_and_cancel_by_id_or_by_filter() {
    let ts = TestStore::new(Backend::Postgres).await;
    let (batch, ids) = failed_batch(&ts, 3).await;
    let b = batch.to_string();
    let out = run(&ts, &["jobs", "show", &ids[0].to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["attempt_history"][0]["error"], "refused by upstream");
    assert_eq!(shown["attempt_history"][0]["node"], "node-cli");
    assert_eq!(shown["attempt_history"][0]["took_ms"], 30);

    // One by ID, as before.
    let out = run(&ts, &["jobs", "retry", &ids[0].to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{} pending", ids[0]));
    // The rest of the batch by filter.
    let out = run(&ts, &["jobs", "retry", "--batch", &b, "--status", "failed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "retried 2 jobs");
    assert_eq!(ts.count_status("pending").await, 3);
    let out = run(&ts, &["jobs", "retry", "--batch", &b, "--status", "failed"]);
    assert_eq!(text(&out.stdout).trim(), "retried 0 jobs");
    // Cancel one by ID, then the rest by batch.
    let out = run(&ts, &["jobs", "cancel", &ids[1].to_string()]);
    assert_eq!(text(&out.stdout).trim(), format!("{} cancelled", ids[1]));
    let out = run(&ts, &["jobs", "cancel", "--batch", &b]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "cancelled 2 jobs");
    assert_eq!(ts.count_status("cancelled").await, 3);
    let out = run(&ts, &["jobs", "retry", "--type", "noop"]);
    assert_eq!(text(&out.stdout).trim(), "retried 3 jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bulk_flags_exit_non_zero_with_a_message() {
    let ts = TestStore::new(Backend::Postgres).await;
    let (batch, ids) = failed_batch(&ts, 1).await;
    let b = batch.to_string();
    let id = ids[0].to_string();
    let huge = "t".repeat(100_000);
    for (args, says) in [
        // Empty.
        (vec!["jobs", "retry"], "required"),
        (vec!["jobs", "cancel"], "required"),
        (vec!["jobs", "retry", "--batch", ""], "invalid value"),
        (vec!["jobs", "retry", "--status", ""], "invalid value"),
        (vec!["jobs", "cancel", "--type", ""], "must not be empty"),
        // Wrong.
        (
            vec!["jobs", "retry", "--status", "runnin"],
            "unknown status",
        ),
        (vec!["jobs", "retry", "--status", "running"], "not running"),
        (
            vec!["jobs", "retry", "--status", "pending"],
            "only failed or cancelled",
        ),
        (vec!["jobs", "cancel", "--status", "failed"], "only pending"),
        (
            vec!["jobs", "retry", "--batch", "not-a-uuid"],
            "invalid value",
        ),
        (
            vec!["jobs", "retry", &id, "--batch", &b],
            "cannot be used with",
        ),
        (
            vec!["jobs", "cancel", "--batch", &b, "--limit", "5"],
            "unexpected argument",
        ),
        // Huge.
        (vec!["jobs", "retry", "--type", &huge], "longer than"),
        // Hostile.
        (
            vec!["jobs", "retry", "--type", "noop'; DROP TABLE jobs;--"],
            "may only contain",
        ),
        (
            vec!["jobs", "cancel", "--batch", "' OR 1=1 --"],
            "invalid value",
        ),
    ] {
        refused(&run(&ts, &args), says);
    }
    assert_eq!(ts.count_status("failed").await, 1, "nothing changed");
}

/// Arguments, environment variables, and what the error must say.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_retention_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // A SQLite file that must never be created: the check comes before any connection.
    let db = dir.path().join("never.db");
    let url = format!("sqlite://{}", db.display());
    let cfg = |name: &str, body: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    };
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(common::bin())
            .args(["--database-url", &url])
            .args(args)
            .env("SKIPLOCK_LOG", "warn")
            .env_remove("SKIPLOCK_CONFIG")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let huge = format!("{}d", "9".repeat(10_000));
    let unknown = cfg("unknown.toml", "[retention]\nrunning = \"1d\"\n");
    let negative = cfg("negative.toml", "[retention]\nfailed = \"-3d\"\n");
    let typed = cfg(
        "typed.toml",
        "[retention.types.noop]\ncancelled = \"soon\"\n",
    );
    let bad_key = cfg("key.toml", "[retention.types.'a b']\nfailed = \"1d\"\n");
    let cases: Vec<Case> = vec![
        (
            vec!["worker", "--retention-failed=-1d"],
            vec![],
            "cannot be negative",
        ),
        (
            vec!["serve", "--retention-succeeded", "soon"],
            vec![],
            "--retention-succeeded",
        ),
        (
            vec!["worker", "--retention-cancelled", ""],
            vec![],
            "whole number",
        ),
        (
            vec!["worker", "--retention-failed", "0s"],
            vec![],
            "at least 1s",
        ),
        (
            vec!["worker", "--retention-failed", &huge],
            vec![],
            "at most 100 years",
        ),
        (
            vec!["worker", "--retention-type", "noop:running=1h"],
            vec![],
            "not running",
        ),
        (
            vec!["worker", "--retention-type", "noop:runnin=1h"],
            vec![],
            "unknown status",
        ),
        (vec!["worker", "--retention-type", "noop"], vec![], "no '='"),
        (
            vec!["worker", "--retention-type", "x'; DROP TABLE jobs;--=1d"],
            vec![],
            "may only contain",
        ),
        (
            vec!["worker"],
            vec![("SKIPLOCK_RETENTION_SUCCEEDED", "garbage")],
            "invalid retention",
        ),
        (
            vec!["worker"],
            vec![("SKIPLOCK_RETENTION_TYPES", "a=1d,b:pending=1d")],
            "not pending",
        ),
        (
            vec!["--config", &unknown, "worker"],
            vec![],
            "unknown field `running`",
        ),
        (
            vec!["--config", &negative, "worker"],
            vec![],
            "[retention] failed",
        ),
        (
            vec!["--config", &typed, "serve"],
            vec![],
            "[retention] types.noop.cancelled",
        ),
        (
            vec!["--config", &bad_key, "worker"],
            vec![],
            "may only contain",
        ),
    ];
    for (args, env, says) in cases {
        let out = run(&args, &env);
        refused(&out, says);
        assert!(text(&out.stderr).len() < 2000, "one clear line, not a dump");
        assert!(!db.exists(), "{args:?} touched the database");
    }
}
