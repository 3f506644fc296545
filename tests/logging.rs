//! Logs as an operator sets them: `--log-format json` (or `SKIPLOCK_LOG_FORMAT`) gives one
//! JSON object per stderr line; `SKIPLOCK_LOG`, else `RUST_LOG`, sets the level; a bad format
//! or filter is refused with a message.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `skiplock ARGS` on a fresh SQLite file, with no log settings inherited from the caller.
fn skiplock(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    let db = format!("sqlite://{}", dir.join("skiplock.db").display());
    c.args(["--database-url", &db])
        .args(args)
        .env_remove("SKIPLOCK_LOG")
        .env_remove("RUST_LOG")
        .env_remove("SKIPLOCK_LOG_FORMAT")
        .env_remove("SKIPLOCK_CONFIG")
        .stdin(Stdio::null());
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every stderr line as JSON; panics on a line that is not an object.
fn json_lines(o: &Output) -> Vec<Value> {
    stderr(o)
        .lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => v,
            _ => panic!("not a JSON object line: {l:?}\n{}", stderr(o)),
        })
        .collect()
}

/// A worker started, stopped with SIGTERM once it logged its start, and its output.
fn worker_run(mut c: Command) -> Output {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = c
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(log.path())
        .unwrap()
        .contains("node started")
    {
        assert!(Instant::now() < deadline, "the worker did not start");
        assert!(child.try_wait().unwrap().is_none(), "the worker exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: std::fs::read(log.path()).unwrap(),
    }
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = worker_run(skiplock(dir.path(), &["--log-format", "json", "worker"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let started = lines
        .iter()
        .find(|l| l["message"] == "node started")
        .unwrap_or_else(|| panic!("no start line: {lines:?}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "skiplock::node");
    assert_eq!(started["store"], "sqlite", "fields sit beside the message");
    assert!(started["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(lines.iter().any(|l| l["message"] == "node stopped"));

    // The variable does the same, and a failing command's error is a JSON line too.
    let out = skiplock(dir.path(), &["submit", "noop", "--target", "{not json"])
        .env("SKIPLOCK_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR", "{lines:?}");
    assert!(!last["message"].as_str().unwrap().is_empty());
}

#[test]
fn a_bad_log_format_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let by_flag = skiplock(dir.path(), &["--log-format", "yaml", "status"])
        .output()
        .unwrap();
    let by_env = skiplock(dir.path(), &["status"])
        .env("SKIPLOCK_LOG_FORMAT", "JSONL")
        .output()
        .unwrap();
    for out in [by_flag, by_env] {
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(
            e.contains("--log-format") && e.contains("[possible values: text, json]"),
            "{e}"
        );
    }
}

/// The levels of the JSON log lines `status` writes on an empty database.
fn status_levels(dir: &std::path::Path, env: &[(&str, &str)]) -> Vec<String> {
    let out = skiplock(dir, &["--log-format", "json", "status"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out)
        .iter()
        .map(|l| l["level"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rust_log_sets_the_level_and_skiplock_log_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    // `status` logs only warnings by default; its queries are logged at debug.
    assert!(!status_levels(dir.path(), &[]).contains(&"DEBUG".to_string()));
    let debug = status_levels(dir.path(), &[("RUST_LOG", "debug")]);
    assert!(debug.contains(&"DEBUG".to_string()), "{debug:?}");
    let own = status_levels(
        dir.path(),
        &[("RUST_LOG", "debug"), ("SKIPLOCK_LOG", "warn")],
    );
    assert!(!own.contains(&"DEBUG".to_string()), "{own:?}");
    let own = status_levels(
        dir.path(),
        &[("RUST_LOG", "warn"), ("SKIPLOCK_LOG", "debug")],
    );
    assert!(own.contains(&"DEBUG".to_string()), "{own:?}");
}

#[test]
fn a_bad_log_filter_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for var in ["SKIPLOCK_LOG", "RUST_LOG"] {
        let out = skiplock(dir.path(), &["status"])
            .env(var, "info,sqlx=loud")
            .output()
            .unwrap();
        let e = stderr(&out);
        assert!(!out.status.success(), "{var} accepted");
        assert!(e.contains(var) && e.contains("not a log filter"), "{e}");
    }
}

#[test]
fn a_closed_stderr_neither_hangs_nor_fails_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = skiplock(dir.path(), &["status"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away after one line, as `skiplock … 2>&1 | head -1` does.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut stderr, &mut String::new()).unwrap();
    drop(stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("status hung once its stderr was closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Lost log lines are no reason to fail (or panic): the report went to stdout.
    assert!(status.success(), "{status}");
}
