//! A `skiplock serve` child process on a free loopback port, for the tests that drive the
//! binary as a user would (curl-like HTTP calls, the CLI, a headless browser).
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{bin, TestStore};

pub struct Served {
    /// Killed when dropped, so a failing test leaves no server behind.
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

/// Starts `skiplock serve --bind 127.0.0.1:0` on the test's schema with `extra` flags and
/// waits for the line that names the port.
pub async fn serve(db: &TestStore, extra: &[&str]) -> Served {
    serve_env(db, extra, &[]).await
}

/// [`serve`] with extra environment variables (settings given the way a deployment would).
pub async fn serve_env(db: &TestStore, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(bin())
        .args(db.cli_args())
        .args(["serve", "--bind", "127.0.0.1:0", "--concurrency", "4"])
        .args(extra)
        .env("SKIPLOCK_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn skiplock serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("serve printed its address in time")
        .unwrap()
        .expect("serve printed a line");
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served { child, base }
}

impl Served {
    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// `127.0.0.1:PORT`, for raw sockets.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// SIGTERM, then the exit status (within `within`).
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("serve stopped after SIGTERM")
            .unwrap()
    }
}

/// Runs the binary to completion: (exit success, stdout, stderr).
pub async fn skiplock(db: &TestStore, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(db.cli_args())
        .args(args)
        .env("SKIPLOCK_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
