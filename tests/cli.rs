//! The `skiplock` binary as a user drives it, against the real PostgreSQL: submit, worker,
//! status, jobs; SIGTERM and SIGKILL; bad files, flags and configs.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{Backend, TestStore};

fn cmd(ts: &TestStore, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.args(ts.cli_args())
        .args(args)
        .env("SKIPLOCK_LOG", "info")
        .env_remove("SKIPLOCK_CONFIG");
    c
}

fn run(ts: &TestStore, args: &[&str]) -> Output {
    cmd(ts, args).output().unwrap()
}

fn spawn_worker(ts: &TestStore, args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd(ts, &[&["worker"], args].concat())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_targets_from_a_file_all_succeed_and_sigterm_exits_0() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.jsonl");
    let body: String = (0..10_000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(&file, body).unwrap();
    let out = run(
        &ts,
        &[
            "submit",
            "noop",
            "--file",
            file.to_str().unwrap(),
            "--batch",
            "tenk",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let batch = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut w = spawn_worker(&ts, &["--concurrency", "16"], &dir.path().join("w.log"));
    assert!(ts.wait_all_finished(Duration::from_secs(120)).await);
    signal(&w, "-TERM");
    let status = wait_exit(&mut w, Duration::from_secs(30))
        .await
        .expect("worker exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert_eq!(ts.counts().await.succeeded, 10_000);

    let out = run(&ts, &["status", "--batch", &batch, "--json"]);
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["name"], "tenk");
    assert_eq!(b["succeeded"], 10_000);
    let out = run(&ts, &["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("noop") && text.contains("10000"), "{text}");
    let out = run(
        &ts,
        &[
            "jobs",
            "list",
            "--status",
            "succeeded",
            "--limit",
            "3",
            "--json",
        ],
    );
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.len(), 3);
    let out = run(&ts, &["jobs", "show", jobs[0]["id"].as_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\": \"succeeded\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_types_from_a_config_file_write_once_or_not_at_all() {
    let ts = TestStore::new(Backend::Postgres).await;
    let s = &ts.schema;
    let pg = ts.pg.as_ref().unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {s}.ledger (job_id uuid, target jsonb)"
    ))
    .execute(pg)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skiplock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[types.record]
sql = ["INSERT INTO {s}.ledger VALUES ($1, $2)"]

[types.broken]
sql = ["INSERT INTO {s}.ledger VALUES ($1, $2)", "SELECT * FROM {s}.no_such_table"]
max_attempts = 2
backoff_ms = 50
"#
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let targets: Vec<String> = (0..40).map(|i| format!("{{\"i\":{i}}}")).collect();
    let mut args = vec!["--config", cfg, "submit", "record"];
    for t in &targets {
        args.push("--target");
        args.push(t);
    }
    assert!(run(&ts, &args).status.success());
    let out = run(
        &ts,
        &[
            "--config", cfg, "submit", "broken", "--target", "{}", "--target", "{}",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut w = spawn_worker(&ts, &["--config", cfg], &dir.path().join("w.log"));
    assert!(ts.wait_all_finished(Duration::from_secs(60)).await);
    signal(&w, "-TERM");
    assert_eq!(
        wait_exit(&mut w, Duration::from_secs(30))
            .await
            .unwrap()
            .code(),
        Some(0)
    );
    let (rows, distinct): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT job_id) FROM {s}.ledger"
    ))
    .fetch_one(pg)
    .await
    .unwrap();
    assert_eq!(
        (rows, distinct),
        (40, 40),
        "one row per record job, none from broken jobs"
    );
    let failed: Vec<(i32, i32, String)> = sqlx::query_as(&format!(
        "SELECT attempts, max_attempts, last_error FROM {s}.jobs WHERE type = 'broken' AND status = 'failed'"
    ))
    .fetch_all(pg)
    .await
    .unwrap();
    assert_eq!(failed.len(), 2);
    for (a, m, e) in failed {
        assert_eq!((a, m), (2, 2));
        assert!(
            e.contains("statement 2 failed") && e.contains("no_such_table"),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_and_the_next_one_finishes_it_once() {
    let ts = TestStore::new(Backend::Postgres).await;
    let s = &ts.schema;
    let pg = ts.pg.as_ref().unwrap();
    sqlx::query(&format!("CREATE TABLE {s}.effects (job_id uuid)"))
        .execute(pg)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    // Writes its effect, then sleeps: killed during the sleep, the effect must vanish.
    let sleep_sql = format!("SELECT pg_sleep(2) /* {s} */");
    std::fs::write(
        &config,
        format!("[types.slow]\nsql = [\"INSERT INTO {s}.effects VALUES ($1)\", \"{sleep_sql}\"]\n"),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let out = run(
        &ts,
        &[
            "--config", cfg, "submit", "slow", "--target", "{}", "--target", "{}", "--target", "{}",
        ],
    );
    assert!(out.status.success());
    let mut first = spawn_worker(
        &ts,
        &["--config", cfg, "--concurrency", "3"],
        &dir.path().join("a.log"),
    );
    let running = common::wait_until(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
        )
        .bind(&sleep_sql)
        .fetch_one(pg)
        .await
        .unwrap();
        n == 3
    })
    .await;
    assert!(running, "all three jobs were mid-flight");
    signal(&first, "-KILL");
    wait_exit(&mut first, Duration::from_secs(10))
        .await
        .unwrap();
    // The server notices the dead client and rolls back; nothing of the attempts remains.
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {s}.effects"))
                .fetch_one(pg)
                .await
                .unwrap();
            n == 0
        })
        .await
    );
    assert_eq!(ts.counts().await.pending, 3);
    let mut second = spawn_worker(
        &ts,
        &["--config", cfg, "--concurrency", "3"],
        &dir.path().join("b.log"),
    );
    assert!(ts.wait_all_finished(Duration::from_secs(60)).await);
    signal(&second, "-TERM");
    wait_exit(&mut second, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(ts.counts().await.succeeded, 3);
    let (rows, distinct): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT job_id) FROM {s}.effects"
    ))
    .fetch_one(pg)
    .await
    .unwrap();
    assert_eq!((rows, distinct), (3, 3));
}

/// Runs a command that must fail: non-zero exit, one clear `error:` line naming `needle`.
fn must_fail(ts: &TestStore, args: &[&str], needle: &str) {
    let out = run(ts, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_files_are_refused_with_the_line_and_insert_nothing() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, body: &[u8]| {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    };
    let bad_json = p("bad.jsonl", b"{\"ok\":1}\n{\"ok\":2}\n{oops\n");
    must_fail(
        &ts,
        &["submit", "noop", "--file", &bad_json],
        "bad.jsonl:3: not valid JSON",
    );
    let empty = p("empty.jsonl", b"\n\n");
    must_fail(&ts, &["submit", "noop", "--file", &empty], "no targets");
    let binary = p("bin.jsonl", &[0xff, 0xfe, 0x00, b'\n']);
    must_fail(
        &ts,
        &["submit", "noop", "--file", &binary],
        "bin.jsonl:1: not UTF-8",
    );
    let mut huge = vec![b'"'];
    huge.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    huge.extend(b"\"\n");
    let huge = p("huge.jsonl", &huge);
    must_fail(&ts, &["submit", "noop", "--file", &huge], "longer than");
    must_fail(
        &ts,
        &["submit", "noop", "--file", "/nonexistent/t.jsonl"],
        "cannot open",
    );
    must_fail(
        &ts,
        &["submit", "noop", "--target", "{nope"],
        "not valid JSON",
    );
    must_fail(&ts, &["submit", "noop"], "at least one --target");
    must_fail(
        &ts,
        &["submit", "no spaces allowed", "--target", "{}"],
        "may only contain",
    );
    must_fail(
        &ts,
        &["submit", "x'; DROP TABLE jobs; --", "--target", "{}"],
        "may only contain",
    );
    must_fail(
        &ts,
        &["submit", "noop", "--target", "{}", "--max-attempts", "0"],
        "max_attempts",
    );
    assert_eq!(
        ts.counts().await,
        skiplock::report::TypeCounts::default(),
        "nothing was inserted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_flags_and_urls_fail_fast_with_a_clear_line() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, body: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    };
    let typo = p("typo.toml", "concurency = 4\n");
    must_fail(
        &ts,
        &["--config", &typo, "worker"],
        "unknown field `concurency`",
    );
    let garbage = p("garbage.toml", "[[[ not toml");
    must_fail(&ts, &["--config", &garbage, "worker"], "garbage.toml");
    for (name, body, needle) in [
        (
            "chunk-neg.toml",
            "chunk_size = -1\n",
            "chunk size must be between 1",
        ),
        (
            "chunk-zero.toml",
            "chunk_size = 0\n",
            "chunk size must be between 1",
        ),
        (
            "chunk-huge.toml",
            "chunk_size = 99999999999\n",
            "chunk size must be between 1",
        ),
        (
            "chunk-word.toml",
            "chunk_size = \"lots\"\n",
            "chunk size must be `auto`",
        ),
        (
            "chunk-empty.toml",
            "chunk_size = \"\"\n",
            "chunk size must be `auto`",
        ),
        (
            "chunk-auto0.toml",
            "chunk_size = \"auto:0\"\n",
            "chunk size must be between 1",
        ),
    ] {
        let f = p(name, body);
        must_fail(&ts, &["--config", &f, "worker"], needle);
    }
    let noproc = p("noproc.toml", "[types.orphan]\nmax_attempts = 2\n");
    must_fail(
        &ts,
        &["--config", &noproc, "worker"],
        "[types.orphan]: no processor",
    );
    // submit and status refuse a broken [types] entry as worker does, rather than guessing.
    must_fail(
        &ts,
        &["--config", &noproc, "submit", "orphan", "--target", "{}"],
        "[types.orphan]: no processor",
    );
    must_fail(
        &ts,
        &["--config", &noproc, "status"],
        "[types.orphan]: no processor",
    );
    let dup = p("dup.toml", "[types.noop]\nsql = [\"select 1\"]\n");
    must_fail(&ts, &["--config", &dup, "worker"], "already registered");
    let inject = p("inject.toml", "schema = \"x; DROP TABLE y\"\n");
    must_fail(
        &ts,
        &[
            "--config",
            &inject,
            "migrate",
            "--schema",
            "x; DROP TABLE y",
        ],
        "invalid schema",
    );
    must_fail(
        &ts,
        &["--config", "/nonexistent.toml", "worker"],
        "cannot read /nonexistent.toml",
    );
    must_fail(
        &ts,
        &["worker", "--concurrency", "0"],
        "concurrency must be between 1",
    );
    must_fail(&ts, &["worker", "--concurrency", "lots"], "invalid value");
    for (queues, says) in [
        ("default=", "not a whole number"),
        ("=4", "must not be empty"),
        ("a=0", "between 1 and"),
        ("a=-1", "between 1 and"),
        ("a=1,a=2", "given twice"),
        ("", "no queues"),
        ("media", "NAME=CONCURRENCY"),
        ("a b=1", "may only contain"),
        ("x';DROP TABLE jobs;--=1", "may only contain"),
    ] {
        let flag = format!("--queues={queues}");
        must_fail(&ts, &["worker", &flag], says);
    }
    let huge = format!("{}=1", "q".repeat(100_000));
    must_fail(&ts, &["worker", "--queues", &huge], "longer than 64");
    must_fail(
        &ts,
        &["worker", "--queues", "default=2", "--concurrency", "4"],
        "not both",
    );
    let q0 = p("q0.toml", "[queues]\ndefault = 0\n");
    must_fail(&ts, &["--config", &q0, "worker"], "[queues]");
    let qbad = p("qbad.toml", "[types.noop]\nqueue = \"a b\"\n");
    must_fail(&ts, &["--config", &qbad, "worker"], "[types.noop] queue");
    must_fail(
        &ts,
        &["worker", "--fail-unrunnable-after=-1d"],
        "--fail-unrunnable-after",
    );
    for (queue, says) in [
        ("", "must not be empty"),
        ("a b", "may only contain"),
        ("a=1", "may only contain"),
        ("x';DROP TABLE jobs;--", "may only contain"),
    ] {
        must_fail(
            &ts,
            &["submit", "noop", "--target", "{}", "--queue", queue],
            says,
        );
    }
    must_fail(
        &ts,
        &[
            "submit",
            "noop",
            "--target",
            "{}",
            "--queue",
            &"q".repeat(100_000),
        ],
        "longer than 64",
    );
    assert_eq!(
        ts.count_status("pending").await,
        0,
        "no refused submit inserted a job"
    );
    must_fail(
        &ts,
        &["worker", "--chunk-size", "0"],
        "chunk size must be between 1",
    );
    must_fail(
        &ts,
        &["worker", "--chunk-size", "auto:0"],
        "chunk size must be between 1",
    );
    must_fail(
        &ts,
        &["worker", "--chunk-size", "auto:99999"],
        "chunk size must be between 1",
    );
    for bad in ["lots", "", "-3", "auto:", "auto:x", "auto;DROP TABLE jobs"] {
        must_fail(
            &ts,
            &["worker", &format!("--chunk-size={bad}")],
            "chunk size must be `auto`, `auto:MAX` or a number",
        );
    }
    let out = Command::new(common::bin())
        .args(["--database-url", "mysql://localhost/x", "migrate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unsupported database URL"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(common::bin())
        .args([
            "--database-url",
            "postgres://postgres:secret@127.0.0.1:1/x",
            "migrate",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the database") && !err.contains("secret"),
        "{err}"
    );
    // Nothing listens there: the real reason, at once, not a pool timing out half a minute
    // later.
    let started = std::time::Instant::now();
    let out = Command::new(common::bin())
        .args([
            "--database-url",
            "postgres://postgres@127.0.0.1:1/x",
            "status",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    println!("unreachable database reported in {:?}", started.elapsed());
    must_fail(&ts, &["jobs", "show", "not-a-uuid"], "invalid value");
    must_fail(
        &ts,
        &["jobs", "show", "01950000-0000-7000-8000-000000000000"],
        "not found",
    );
    must_fail(
        &ts,
        &["status", "--batch", "01950000-0000-7000-8000-000000000000"],
        "not found",
    );
    must_fail(&ts, &["frobnicate"], "unrecognized subcommand");
}
