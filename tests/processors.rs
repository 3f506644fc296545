//! The binary's configurable `http` and `command` processors, declared in TOML as a user
//! would, run by a real worker against PostgreSQL, a local HTTP server and real programs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use skiplock::config::FileConfig;
use skiplock::queue::memory::MemoryQueue;
use skiplock::{Client, Job, NewJob, Node};

use common::{wait_until, Backend, TestStore};

/// Starts the worker for `toml`'s types and runs `jobs` to a finished state.
async fn run_jobs(toml: &str, jobs: Vec<NewJob>) -> Vec<Job> {
    let db = TestStore::new(Backend::Postgres).await;
    let queue = Arc::new(MemoryQueue::default());
    let registry = FileConfig::parse(toml).unwrap().registry().unwrap();
    let worker = Node::builder(db.store.clone(), queue.clone())
        .registry(registry)
        .concurrency(4)
        .start()
        .await
        .unwrap();
    let ids = Client::new(db.store.clone(), queue)
        .submit_many(&jobs)
        .await
        .unwrap();
    let store = db.store.clone();
    let done = wait_until(Duration::from_secs(30), || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            for id in ids {
                if !store.job(id).await.unwrap().unwrap().status.is_finished() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let mut out = Vec::new();
    for id in ids {
        out.push(db.store.job(id).await.unwrap().unwrap());
    }
    assert!(done, "jobs did not finish: {out:#?}");
    out
}

fn job(t: &str, target: Value) -> NewJob {
    NewJob::new(t, target).max_attempts(1)
}

#[tokio::test]
async fn http_posts_the_target_and_records_failures() {
    let seen: Arc<Mutex<Vec<(Value, String)>>> = Arc::default();
    let s2 = seen.clone();
    let hook = Router::new()
        .route(
            "/ok",
            post(move |h: HeaderMap, body: axum::Json<Value>| async move {
                let id = h["x-skiplock-job-id"].to_str().unwrap().to_string();
                s2.lock().unwrap().push((body.0, id));
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/boom",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "E".repeat(100_000)) }),
        )
        .route(
            "/bad",
            post(|| async { (StatusCode::UNPROCESSABLE_ENTITY, "no such invoice") }),
        )
        .route(
            "/slow",
            post(|| async { tokio::time::sleep(Duration::from_secs(30)).await }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, hook).await });
    // A port nothing listens on: bind, note, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let toml = format!(
        "[types.ok]\nhttp = {{ url = 'http://{addr}/ok' }}\n\
         [types.boom]\nhttp = {{ url = 'http://{addr}/boom' }}\n\
         [types.bad]\nhttp = {{ url = 'http://{addr}/bad' }}\nmax_attempts = 3\n\
         [types.slow]\nhttp = {{ url = 'http://{addr}/slow' }}\ntimeout_ms = 300\n\
         [types.down]\nhttp = {{ url = 'http://{closed}/' }}\n"
    );
    let target = json!({"invoice": 7, "note": "\"; rm -rf / #"});
    let mut bad = NewJob::new("bad", json!(1));
    bad.max_attempts = Some(3);
    let jobs = run_jobs(
        &toml,
        vec![
            job("ok", target.clone()),
            job("boom", json!(1)),
            bad,
            job("slow", json!(1)),
            job("down", json!(1)),
        ],
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(target, jobs[0].id.to_string())],
        "the exact target, once"
    );
    assert_eq!(jobs[0].status.as_str(), "succeeded");

    let err = |j: &Job| j.last_error.clone().unwrap_or_default();
    assert_eq!(jobs[1].status.as_str(), "failed");
    assert!(
        err(&jobs[1]).contains("500 Internal Server Error"),
        "{}",
        err(&jobs[1])
    );
    assert!(err(&jobs[1]).contains("EEEE"));
    assert!(err(&jobs[1]).len() < 1024, "the body excerpt is bounded");
    // A 4xx is the request's fault: failed at once, attempts left unused.
    assert_eq!(jobs[2].status.as_str(), "failed");
    assert_eq!(jobs[2].attempts, 1);
    assert!(err(&jobs[2]).contains("422") && err(&jobs[2]).contains("no such invoice"));
    assert!(err(&jobs[3]).contains("timed out"), "{}", err(&jobs[3]));
    assert!(err(&jobs[4]).contains("failed"), "{}", err(&jobs[4]));
    server.abort();
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn command_gets_the_target_on_stdin_and_never_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let save = script(
        dir.path(),
        "save.sh",
        &format!("cat > {d}/\"$SKIPLOCK_JOB_ID\".json"),
    );
    let fail = script(
        dir.path(),
        "fail.sh",
        "echo 'disk full' >&2; head -c 100000 /dev/zero | tr '\\0' x >&2; exit 3",
    );
    let slow = script(
        dir.path(),
        "slow.sh",
        &format!("echo $$ > {d}/slow.pid; exec sleep 30"),
    );
    let toml = format!(
        "[types.save]\ncommand = ['{save}']\n\
         [types.failing]\ncommand = ['{fail}']\n\
         [types.slow]\ncommand = ['{slow}']\ntimeout_ms = 500\n\
         [types.missing]\ncommand = ['{d}/does-not-exist']\n\
         [types.args]\ncommand = ['/bin/sh', '-c', 'cat > {d}/args.out', 'ignored; touch {d}/pwned-arg']\n"
    );
    let evil = [
        json!("\"; rm -rf / #"),
        json!(format!("$(touch {d}/pwned-subst)")),
        json!(format!("`touch {d}/pwned-tick`; touch {d}/pwned-semi")),
        json!({"cmd": format!("| touch {d}/pwned-pipe")}),
    ];
    let mut jobs: Vec<NewJob> = evil.iter().map(|t| job("save", t.clone())).collect();
    jobs.extend([
        job("failing", json!(1)),
        job("slow", json!(1)),
        job("missing", json!(1)),
        job("args", json!("x; touch pwned")),
    ]);
    let done = run_jobs(&toml, jobs).await;
    for (j, t) in done.iter().zip(&evil) {
        assert_eq!(j.status.as_str(), "succeeded", "{:?}", j.last_error);
        let written = std::fs::read_to_string(dir.path().join(format!("{}.json", j.id))).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&written).unwrap(),
            *t,
            "stdin is the target"
        );
    }
    let pwned: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "a target ran as a command: {pwned:?}");

    let err = |j: &Job| j.last_error.clone().unwrap_or_default();
    assert_eq!(done[4].status.as_str(), "failed");
    assert!(
        err(&done[4]).contains("exit status: 3") && err(&done[4]).contains("disk full"),
        "{}",
        err(&done[4])
    );
    assert!(err(&done[4]).len() < 2048, "the stderr excerpt is bounded");
    assert!(err(&done[5]).contains("timed out"), "{}", err(&done[5]));
    assert!(err(&done[6]).contains("cannot start"), "{}", err(&done[6]));
    assert_eq!(done[7].status.as_str(), "succeeded");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("args.out")).unwrap(),
        "\"x; touch pwned\""
    );

    // The timed-out program was killed, not left running.
    let pid = std::fs::read_to_string(dir.path().join("slow.pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let gone = wait_until(Duration::from_secs(5), || async {
        std::fs::read_to_string(&stat).map_or(true, |s| s.split(' ').nth(2) == Some("Z"))
    })
    .await;
    assert!(gone, "the timed-out program {pid} still runs");
}

/// Whether `pid` has exited (gone, or a zombie waiting for whoever inherited it).
fn exited(pid: &str) -> bool {
    let stat = format!("/proc/{}/stat", pid.trim());
    std::fs::read_to_string(stat).map_or(true, |s| s.split(' ').nth(2) == Some("Z"))
}

#[tokio::test]
async fn a_command_takes_its_whole_process_group_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // A grandchild that would outlive its parent: started in the background, then waited on
    // until the timeout kills the script.
    let hangs = script(
        dir.path(),
        "hangs.sh",
        &format!("sleep 30 &\necho $! > {d}/hangs.pid\nwait"),
    );
    // The script succeeds at once but leaves a grandchild holding its stderr open.
    let leaves = script(
        dir.path(),
        "leaves.sh",
        &format!("sleep 30 &\necho $! > {d}/leaves.pid\nexit 0"),
    );
    let toml = format!(
        "[types.hangs]\ncommand = ['{hangs}']\ntimeout_ms = 500\n\
         [types.leaves]\ncommand = ['{leaves}']\ntimeout_ms = 20000\n"
    );
    let done = run_jobs(&toml, vec![job("hangs", json!(1)), job("leaves", json!(2))]).await;
    let err = done[0].last_error.clone().unwrap_or_default();
    assert_eq!(done[0].status.as_str(), "failed");
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(
        done[1].status.as_str(),
        "succeeded",
        "the job ends when its program exits: {:?}",
        done[1].last_error
    );
    for name in ["hangs.pid", "leaves.pid"] {
        let pid = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let gone = wait_until(Duration::from_secs(5), || async { exited(&pid) }).await;
        assert!(gone, "{name}: the grandchild {} still runs", pid.trim());
    }
}
