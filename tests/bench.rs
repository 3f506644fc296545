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

/// `--without-counters` disables the count triggers by name in every scratch schema: a trigger
/// renamed by a migration makes the bench fail here instead of measuring nothing.
#[test]
fn bench_runs_without_the_count_triggers() {
    let r = json_of(&small_bench(&["--without-counters"]));
    assert_eq!(r["without_counters"], true);
    assert!(num(&r["processing"][0], "skiplock_jobs_per_sec") > 0.0);
    assert!(num(&r["processing"][0], "raw_jobs_per_sec") > 0.0);
    assert!(num(&r, "enqueue_jobs_per_sec") > 0.0);
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
}

/// `skiplock bench` with every other phase made as small as it goes, plus `extra`.
fn small_bench(extra: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(["--database-url", &common::pg_url(), "bench", "--json"])
        .args(["--jobs", "200", "--enqueue-jobs", "100", "--sweep", "4:10"])
        .args(["--latency-secs", "0", "--skip-memory"])
        .args(extra)
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn scale_phase_reports_claims_report_cost_and_fill_beside_an_empty_table() {
    let r = json_of(&small_bench(&["--scale", "2000:20000"]));
    let sc = &r["scale"];
    assert_eq!(sc["finished"], 20000);
    assert!(sc["pending"].as_u64().unwrap() >= 2000);
    assert_eq!(sc["chunk"], 10);
    assert!(num(sc, "fill_secs") > 0.0);
    for side in ["loaded", "empty"] {
        assert!(num(sc, &format!("{side}_jobs_per_sec")) > 0.0, "{side}");
        assert!(num(sc, &format!("{side}_report_ms")) > 0.0, "{side}");
        let c = &sc[format!("{side}_claim")];
        assert_eq!(c["chunk"], 10, "{side}");
        assert_eq!(c["claims"], 200, "{side}");
        assert!(num(c, "p50_ms") > 0.0, "{side}");
        assert!(num(c, "p99_ms") >= num(c, "p50_ms"), "{side}");
    }
    // The other phases still report, and nothing else was asked for.
    assert_eq!(r["processing"].as_array().unwrap().len(), 1);
    assert!(r["soak"].is_null());
    assert!(r["idle_tx"].is_null());
}

#[test]
fn soak_phase_prints_every_interval_and_a_verdict_per_figure() {
    let out = small_bench(&["--soak", "6s", "--soak-interval", "2s"]);
    let r = json_of(&out);
    let s = &r["soak"];
    assert_eq!(num(s, "duration_secs"), 6.0);
    assert_eq!(num(s, "interval_secs"), 2.0);
    assert!(num(s, "peak_jobs_per_sec") > 0.0);
    assert!((num(s, "offered_jobs_per_sec") - num(s, "peak_jobs_per_sec") / 2.0).abs() < 1e-6);
    assert!(s["rss_of"].as_str().unwrap().contains("in-process"));
    let rows = s["intervals"].as_array().unwrap();
    assert!(rows.len() >= 2, "{rows:?}");
    for row in rows {
        for key in [
            "at_secs",
            "jobs_per_sec",
            "offered_per_sec",
            "rss_mib",
            "jobs_total_mib",
            "jobs_indexes_mib",
            "oldest_xact_secs",
        ] {
            assert!(num(row, key) >= 0.0, "{key}");
        }
        assert!(row["jobs_dead_tuples"].as_i64().unwrap() >= 0);
        assert!(row["intents_dead_tuples"].as_i64().unwrap() >= 0);
        assert!(row["samples"].as_u64().is_some());
    }
    // Something ran and was measured over the run as a whole.
    assert!(
        rows.iter()
            .map(|r| r["samples"].as_u64().unwrap())
            .sum::<u64>()
            > 0
    );
    let verdicts = s["verdicts"].as_array().unwrap();
    let figures: Vec<&str> = verdicts
        .iter()
        .map(|v| v["figure"].as_str().unwrap())
        .collect();
    for f in [
        "throughput jobs/s",
        "pickup p99 ms",
        "rss MiB",
        "jobs total MiB",
        "jobs indexes MiB",
        "jobs dead tuples",
        "oldest transaction s",
    ] {
        assert!(figures.contains(&f), "{f} in {figures:?}");
    }
    for v in verdicts {
        let text = v["text"].as_str().unwrap();
        assert!(v["flat"].is_boolean());
        assert_eq!(
            v["flat"].as_bool().unwrap(),
            text.starts_with("flat"),
            "{v}"
        );
    }
    // Each interval was printed as it happened, not only in the final report.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.matches("soak ").count() >= rows.len(), "{err}");
}

#[test]
fn idle_tx_phase_holds_a_transaction_open_then_reports_recovery() {
    let out = small_bench(&["--idle-tx", "4s", "--idle-rate", "100"]);
    let r = json_of(&out);
    let i = &r["idle_tx"];
    assert_eq!(num(i, "offered_jobs_per_sec"), 100.0);
    assert_eq!(num(i, "idle_secs"), 4.0);
    assert_eq!(num(i, "window_secs"), 1.0);
    let rows = i["windows"].as_array().unwrap();
    let phase = |p: &str| rows.iter().filter(|w| w["phase"] == p).count();
    assert!(
        phase("clean") >= 1 && phase("idle") >= 1 && phase("recovery") >= 1,
        "{rows:?}"
    );
    // Phases come in order.
    let order: Vec<&str> = rows.iter().map(|w| w["phase"].as_str().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|p| ["clean", "idle", "recovery"].iter().position(|q| q == p));
    assert_eq!(order, sorted);
    for w in rows {
        assert!(w["backlog"].as_i64().unwrap() >= 0);
        assert!(w["jobs_dead_tuples"].as_i64().unwrap() >= 0);
        assert!(w["intents_dead_tuples"].as_i64().unwrap() >= 0);
        assert!(num(w, "jobs_per_sec") >= 0.0);
    }
    // The transaction really was open while the idle windows were read.
    assert!(
        rows.iter()
            .filter(|w| w["phase"] == "idle")
            .any(|w| num(w, "oldest_xact_secs") > 0.0),
        "{rows:?}"
    );
    assert!(num(i, "idle_throughput_ratio") >= 0.0);
    assert!(i["kept_up"].is_boolean());
    match i["recovered_after_secs"].as_f64() {
        Some(s) => assert!(s > 0.0 && s <= num(i, "recovery_limit_secs") + 1.0),
        None => assert!(i["recovered_after_secs"].is_null()),
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("idle-tx idle"), "{err}");
}

/// A bench killed while its idle transaction is open must not leave the transaction (and the
/// xmin horizon it pins) behind.
#[tokio::test]
async fn killed_bench_leaves_no_idle_transaction_behind() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut child = Command::new(common::bin())
        .args(["--database-url", &common::pg_url(), "bench", "--json"])
        .args(["--jobs", "100", "--enqueue-jobs", "10", "--sweep", "2:10"])
        .args(["--latency-secs", "0", "--skip-memory"])
        .args(["--idle-tx", "120s", "--idle-rate", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = format!("skiplock bench idle-tx {}", child.id());
    let pool = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let open = "SELECT count(*) FROM pg_stat_activity \
                WHERE application_name = $1 AND state = 'idle in transaction'";
    // Everything the bench says, kept for a failure message.
    let stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = sqlx::query_scalar(open)
            .bind(&name)
            .fetch_one(&pool)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the bench ended ({status}) before its idle transaction opened:\n{}",
                said.join().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the idle transaction never opened"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = said.join();
    let gone = common::wait_until(Duration::from_secs(30), || {
        let pool = pool.clone();
        let name = name.clone();
        async move {
            let n: i64 = sqlx::query_scalar(open)
                .bind(&name)
                .fetch_one(&pool)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
    assert!(gone, "the killed bench's idle transaction is still open");
}

#[test]
fn new_phases_refuse_bad_durations_rates_and_sizes() {
    for args in [
        vec!["--soak", ""],
        vec!["--soak", "0s"],
        vec!["--soak", "0"],
        vec!["--soak", "-5s"],
        vec!["--soak=-5s"],
        vec!["--soak", "ten minutes"],
        vec!["--soak", "30"],
        vec!["--soak", "500ms"],
        vec!["--soak", "8d"],
        vec!["--soak", "99999999999999999999999h"],
        vec!["--soak", "1s'; DROP SCHEMA skiplock CASCADE; --"],
        vec!["--soak", "10s", "--soak-interval", "20s"],
        vec!["--soak", "10s", "--soak-interval", "0s"],
        vec!["--soak", "10s", "--soak-interval", "soon"],
        vec!["--soak-interval", "5s"],
        vec!["--idle-tx", ""],
        vec!["--idle-tx", "0s"],
        vec!["--idle-tx", "-1m"],
        vec!["--idle-tx=-1m"],
        vec!["--idle-tx", "2d"],
        vec!["--idle-tx", "forever"],
        vec!["--idle-tx", "10s", "--idle-rate", "0"],
        vec!["--idle-tx", "10s", "--idle-rate", "-800"],
        vec!["--idle-tx", "10s", "--idle-rate", "NaN"],
        vec!["--idle-tx", "10s", "--idle-rate", "inf"],
        vec!["--idle-tx", "10s", "--idle-rate", "1e12"],
        vec!["--idle-tx", "10s", "--idle-rate", "fast"],
        vec!["--idle-rate", "800"],
        vec!["--scale", "lots"],
        vec!["--scale", "1:-5"],
        vec!["--scale", ":"],
        vec!["--scale", "1:99999999999"],
        vec!["--scale", "1000:1000", "--backlog", "1000:1000"],
    ] {
        let out = Command::new(common::bin())
            .args(["--database-url", &common::pg_url(), "bench"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

fn private_pg(args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/private-pg"))
        .args(args)
        .output()
        .unwrap()
}

/// The private server for soak and scale figures starts with production defaults, answers at
/// the URL it prints, and stops; bad arguments are refused before anything starts.
#[tokio::test]
async fn private_pg_starts_a_server_with_autovacuum_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg");
    let path = path.to_str().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = private_pg(&["start", path, &port]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    let checked = async {
        let pool = sqlx::PgPool::connect(&url).await?;
        let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
            .fetch_one(&pool)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
        pool.close().await;
        Ok::<_, sqlx::Error>((autovacuum, fsync))
    }
    .await;
    let stopped = private_pg(&["stop", path]);
    assert_eq!(checked.unwrap(), ("on".to_string(), "on".to_string()));
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(
        sqlx::PgPool::connect(&url).await.is_err(),
        "still answering"
    );

    for args in [
        vec!["start", path, "99999"],
        vec!["start", path, "80"],
        vec!["start", path, "54a"],
        vec!["start", path, "5499; rm -rf /"],
        vec!["stop"],
        vec!["stop", "/nonexistent/skiplock-pg"],
    ] {
        let out = private_pg(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("private-pg"),
            "{args:?}"
        );
    }
}
