//! `skiplock bench` runs end to end on small sizes and reports what it measured. Figures are
//! printed, never asserted: this only proves the command works and its JSON is complete.

mod common;

use std::process::Command;

#[test]
fn bench_runs_and_reports_every_phase() {
    let out = Command::new(common::bin())
        .args(["--database-url", &common::pg_url(), "bench", "--json"])
        .args([
            "--jobs",
            "300",
            "--enqueue-jobs",
            "1000",
            "--sweep",
            "4:auto,4:1,4:20",
            "--latency-secs",
            "1",
            "--backlog",
            "500:2000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["enqueue_jobs"], 1000);
    assert!(r["enqueue_jobs_per_sec"].as_f64().unwrap() > 0.0);
    let rows = r["processing"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["adaptive"], true);
    assert_eq!(rows[0]["chunk"], 1000);
    assert_eq!(rows[1]["adaptive"], false);
    for row in rows {
        assert!(row["skiplock_jobs_per_sec"].as_f64().unwrap() > 0.0);
        assert!(row["raw_jobs_per_sec"].as_f64().unwrap() > 0.0);
        assert!(row["fraction_of_raw"].as_f64().unwrap() > 0.0);
        assert!(row["external_jobs_per_sec"].as_f64().unwrap() > 0.0);
        assert!(row["lease_jobs_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert!(r["external_latency"]["samples"].as_u64().unwrap() > 0);
    assert_eq!(r["scale"]["finished"], 2000);
    assert!(r["scale"]["loaded_jobs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["scale"]["empty_jobs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["latency"]["samples"].as_u64().unwrap() > 0);
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() >= r["latency"]["p50_ms"].as_f64().unwrap());
    assert!(r["worker_peak_rss_mib"].as_f64().unwrap() > 1.0);
}

#[test]
fn bench_runs_with_successes_deleted_at_completion() {
    let out = Command::new(common::bin())
        .args(["--database-url", &common::pg_url(), "bench", "--json"])
        .args([
            "--jobs",
            "300",
            "--enqueue-jobs",
            "100",
            "--sweep",
            "4:auto",
            "--latency-secs",
            "0",
            "--skip-memory",
            "--delete-succeeded",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["delete_succeeded"], true);
    assert!(
        r["processing"][0]["skiplock_jobs_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        r["processing"][0]["external_jobs_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bench_refuses_bad_settings() {
    for args in [
        vec!["bench", "--sweep", "16"],
        vec!["bench", "--sweep", "0:1"],
        vec!["bench", "--sweep", "a:b"],
        vec!["bench", "--sweep", "16:auto:0"],
        vec!["bench", "--sweep", "16:auto:99999"],
        vec!["bench", "--sweep", "16:"],
        vec!["bench", "--jobs", "0"],
        vec!["bench", "--backlog", "lots"],
        vec!["bench", "--backlog", "1:-5"],
        vec!["bench", "--backlog", "1:99999999999"],
    ] {
        let out = Command::new(common::bin())
            .args(["--database-url", &common::pg_url()])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "{args:?}"
        );
    }
    let out = Command::new(common::bin())
        .args(["--database-url", "sqlite://x.db", "bench"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bench needs a PostgreSQL"));
}
