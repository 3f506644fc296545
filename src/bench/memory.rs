//! Worker memory: a child `skiplock worker` at concurrency 64 processes a batch; its peak
//! resident set (VmHWM) is read from /proc before it is stopped. The child is driven with
//! `tokio::process`, so waiting on it never blocks a runtime thread.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{BenchConfig, Scratch};
use crate::error::{Error, Result};
use crate::store::Store;

/// How long the stopped worker gets to finish its graceful shutdown before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

pub async fn measure(cfg: &BenchConfig) -> Result<f64> {
    let s = Scratch::new(cfg, 2).await?;
    s.noop_batch(cfg.jobs).await?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Invalid(format!("cannot find the skiplock binary: {e}")))?;
    let mut child = Command::new(exe)
        .args(["--database-url", &cfg.database_url, "--schema", &s.schema])
        .args([
            "worker",
            "--no-migrate",
            "--concurrency",
            "64",
            "--chunk-size",
            "100",
        ])
        .env("SKIPLOCK_LOG", "warn")
        .env_remove("SKIPLOCK_REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Whatever happens to this future (an error below, Ctrl-C), the worker goes with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot start a worker: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !s
        .store
        .due_pending(
            1,
            Duration::from_secs(10),
            &crate::store::Scope {
                queue: crate::job::DEFAULT_QUEUE.into(),
                types: vec!["noop".to_string()].into(),
            },
        )
        .await?
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = match child.id() {
        Some(pid) => tokio::fs::read_to_string(format!("/proc/{pid}/status"))
            .await
            .unwrap_or_default(),
        None => String::new(),
    };
    stop(&mut child).await;
    s.drop_schema().await?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| Error::Invalid("could not read the worker's peak memory".into()))
}

/// Stops the worker as an operator would (SIGTERM: graceful), killing it if it lingers, and
/// reaps it so no zombie outlives the bench.
async fn stop(child: &mut Child) {
    terminate(child);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(unix)]
fn terminate(child: &mut Child) {
    use rustix::process::{kill_process, Pid, Signal};
    // No PID: already reaped. `from_raw` refuses 0 and negatives, which would signal a group.
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    match pid.and_then(Pid::from_raw) {
        Some(pid) => {
            let _ = kill_process(pid, Signal::TERM);
        }
        None => {
            let _ = child.start_kill();
        }
    }
}

/// Elsewhere there is no SIGTERM to send: the worker is killed outright.
#[cfg(not(unix))]
fn terminate(child: &mut Child) {
    let _ = child.start_kill();
}
