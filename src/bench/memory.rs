//! Worker memory: a child `skiplock worker` at concurrency 64 processes a batch; its peak
//! resident set (VmHWM) is read from /proc before it is stopped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BenchConfig, Scratch};
use crate::error::{Error, Result};
use crate::store::Store;

pub async fn measure(cfg: &BenchConfig) -> Result<f64> {
    let s = Scratch::new(&cfg.database_url, 2).await?;
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
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot start a worker: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !s
        .store
        .due_pending(1, Duration::from_secs(10))
        .await?
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    s.drop_schema().await?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| Error::Invalid("could not read the worker's peak memory".into()))
}
