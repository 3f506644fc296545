//! Unique jobs and cron across processes, on PostgreSQL: three `skiplock worker` nodes
//! evaluating a per-second schedule while one is SIGKILLed and restarted insert exactly one
//! job per tick; four processes submitting the same unique key a hundred times leave one job.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};

use common::cluster::{ClusterArgs, NodeProc};
use common::{bin, wait_until, Backend, TestStore};

async fn ticks(ts: &TestStore) -> BTreeMap<DateTime<Utc>, i64> {
    let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(&format!(
        "SELECT run_at, count(*) FROM {}.jobs WHERE type = 'noop' GROUP BY run_at",
        ts.schema
    ))
    .fetch_all(ts.pg.as_ref().unwrap())
    .await
    .unwrap();
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_insert_each_tick_once_through_a_kill() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skiplock.toml");
    std::fs::write(
        &config,
        "[cron.every-second]\nschedule = '* * * * * *'\ntype = 'noop'\ntarget = { from = 'cron' }\ncatch_up = 'all'\n",
    )
    .unwrap();
    let mut cluster = ClusterArgs::new(&ts, String::new());
    cluster.config = Some(config);
    let args = cluster.worker(2, 1);
    let mut nodes: Vec<NodeProc> = (0..3)
        .map(|i| NodeProc::start(dir.path(), &format!("n{i}"), args.clone()))
        .collect();

    // Let the schedule run, kill a node mid-way, bring it back, let it run on.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            ticks(&ts).await.len() >= 4
        })
        .await,
        "the cron started: {}",
        nodes[0].log()
    );
    nodes[1].kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[1].restart();
    let before = ticks(&ts).await.len();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            ticks(&ts).await.len() >= before + 5
        })
        .await
    );
    for n in &mut nodes {
        assert!(n.alive(), "a node died: {}", n.log());
    }
    // Stop every node (no more inserts), then read the ticks.
    for n in &mut nodes {
        n.kill9();
    }
    let got = ticks(&ts).await;
    assert!(got.len() >= 9, "about ten seconds of ticks: {}", got.len());
    let doubled: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "ticks inserted more than once: {doubled:?}"
    );
    let times: Vec<DateTime<Utc>> = got.keys().copied().collect();
    for w in times.windows(2) {
        assert_eq!(
            w[1] - w[0],
            chrono::Duration::seconds(1),
            "a tick is missing between {} and {}",
            w[0],
            w[1]
        );
    }
    // The jobs ran: the nodes processed them.
    let done: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.jobs WHERE status = 'succeeded'",
        ts.schema
    ))
    .fetch_one(ts.pg.as_ref().unwrap())
    .await
    .unwrap();
    assert!(done > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_submits_of_one_key_from_four_processes_leave_one_job() {
    let ts = TestStore::new(Backend::Postgres).await;
    let mut lanes = Vec::new();
    for lane in 0..4 {
        let args = ts.cli_args();
        lanes.push(tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for i in 0..25 {
                let o = Command::new(bin())
                    .args(&args)
                    .args(["submit", "noop", "--target"])
                    .arg(format!("{{\"lane\": {lane}, \"i\": {i}}}"))
                    .args(["--unique-key", "report:2026-11-29"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                out.push((
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                    String::from_utf8_lossy(&o.stderr).contains("duplicate"),
                ));
            }
            out
        }));
    }
    let mut results = Vec::new();
    for l in lanes {
        results.extend(l.await.unwrap());
    }
    assert_eq!(results.len(), 100);
    let ids: std::collections::HashSet<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every submit names the one job: {ids:?}");
    let dups = results.iter().filter(|(_, d)| *d).count();
    assert_eq!(dups, 99, "every submit but one says it was a duplicate");
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}.jobs", ts.schema))
        .fetch_one(ts.pg.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_unique_keys_and_cron_entries_are_refused_by_the_binary() {
    let ts = TestStore::new(Backend::Postgres).await;
    let submit = |extra: &[&str]| {
        Command::new(bin())
            .args(ts.cli_args())
            .args(["submit", "noop"])
            .args(extra)
            .output()
            .unwrap()
    };
    let huge = "k".repeat(513);
    for (args, says) in [
        (vec!["--target", "{}", "--unique-key", ""], "empty"),
        (vec!["--target", "{}", "--unique-key", huge.as_str()], "512"),
        (
            vec!["--target", "{}", "--target", "{}", "--unique-key", "k"],
            "exactly one",
        ),
        (
            vec![
                "--target",
                "{}",
                "--unique-key",
                "k",
                "--unique-for",
                "soon",
            ],
            "unique_for",
        ),
        (vec!["--target", "{}", "--unique-for", "1h"], "--unique-key"),
        (vec!["--file", "-", "--unique-key", "k"], "cannot be used"),
    ] {
        let o = submit(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    }
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}.jobs", ts.schema))
        .fetch_one(ts.pg.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was inserted");

    let dir = tempfile::tempdir().unwrap();
    for (toml, says) in [
        (
            "[cron.nightly]\nschedule = '2 * *'\ntype = 'noop'",
            "[cron.nightly]: schedule",
        ),
        (
            "[cron.nightly]\nschedule = '@daily'\ntype = 'noop'\ntimezone = 'Europe/Atlantis'",
            "unknown time zone",
        ),
        (
            "[cron.nightly]\nschedule = '@daily'\ntype = 'noop'\ncatch_up = 'sometimes'",
            "unknown catch_up",
        ),
        ("[cron.nightly]\nschedule = '@daily'", "type"),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let o = Command::new(bin())
            .args(ts.cli_args())
            .arg("--config")
            .arg(&path)
            .args(["worker", "--concurrency", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{toml}: {err}");
    }
}
