//! `skiplock bench` on SQLite runs end to end on small sizes, beside its raw limit, in scratch
//! files it removes. Figures are printed, never asserted.

mod common;

use std::process::Command;

fn bench_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    Command::new(common::bin())
        .args(["--database-url", &url, "bench"])
        .args(args)
        .env_remove("SKIPLOCK_REDIS_URL")
        .output()
        .unwrap()
}

#[test]
fn bench_on_sqlite_reports_enqueue_and_processing_beside_the_raw_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_in(
        dir.path(),
        &[
            "--json",
            "--jobs",
            "300",
            "--enqueue-jobs",
            "1000",
            "--sweep",
            "2:auto,2:1,2:20",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["store"], "sqlite");
    assert_eq!(r["enqueue_jobs"], 1000);
    for k in [
        "enqueue_jobs_per_sec",
        "enqueue_raw_jobs_per_sec",
        "enqueue_raw_bulk_jobs_per_sec",
    ] {
        assert!(r[k].as_f64().unwrap() > 0.0, "{k}");
    }
    let rows = r["processing"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["adaptive"], true);
    assert_eq!(rows[2]["chunk"], 20);
    for row in rows {
        for k in [
            "skiplock_jobs_per_sec",
            "raw_jobs_per_sec",
            "external_jobs_per_sec",
            "lease_jobs_per_sec",
        ] {
            assert!(row[k].as_f64().unwrap() > 0.0, "{k}: {row}");
        }
    }
    // Every scratch file went; the named database was never created.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bench_on_sqlite_refuses_what_it_cannot_measure() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--scale"], "PostgreSQL phase"),
        (vec!["--unique"], "PostgreSQL phase"),
        (vec!["--soak", "1m"], "PostgreSQL phase"),
        (vec!["--sweep", "4:x"], "--sweep"),
    ] {
        let out = bench_in(dir.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = Command::new(common::bin())
        .args(["--database-url", "sqlite::memory:", "bench"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a database file"));
}
