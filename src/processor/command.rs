//! Config-defined `command` types: run a program with the job's target (JSON) on stdin; exit
//! status 0 is success. The program is executed directly with its fixed arguments, never
//! through a shell, and the target only ever travels on stdin: no target can become a command.
//!
//! A job's processes do not outlive it. On Unix the program starts in a process group of its
//! own, and that whole group is killed when the program exits (whatever it left running in
//! the background would otherwise hold its stderr open and keep the job waiting) and when the
//! job times out (the executor drops this future; killing only the direct child would leave
//! its children running, unsupervised, for as long as they like).

use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{ProcessError, Processor};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::store::JobTx;

/// Most bytes of a failed run's stderr kept in the job's error.
pub const MAX_EXCERPT: usize = 1024;

pub struct CommandProcessor {
    program: String,
    args: Vec<String>,
}

impl CommandProcessor {
    /// `argv[0]` is the program (a path, or a name looked up in `PATH`), the rest its arguments.
    pub fn new(argv: Vec<String>) -> Result<Self> {
        let mut it = argv.into_iter();
        let program = it
            .next()
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| Error::Config("command must name a program".into()))?;
        let args: Vec<String> = it.collect();
        if std::iter::once(&program)
            .chain(&args)
            .any(|a| a.contains('\0'))
        {
            return Err(Error::Config(
                "command arguments must not contain NUL".into(),
            ));
        }
        Ok(CommandProcessor { program, args })
    }
}

#[async_trait]
impl Processor for CommandProcessor {
    async fn process(&self, job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let input = serde_json::to_vec(&job.target)
            .map_err(|e| ProcessError::fatal(format!("cannot encode the target: {e}")))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env("SKIPLOCK_JOB_ID", job.id.to_string())
            .env("SKIPLOCK_JOB_TYPE", &job.job_type)
            .env("SKIPLOCK_ATTEMPT", (job.attempts + 1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own group (ID = its PID), so that the group can be killed without touching ours.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| ProcessError::retry(format!("cannot start {}: {e}", self.program)))?;
        // Declared after `child`, so dropped before it: on timeout the group goes first.
        let mut group = group::Guard::of(&child);
        let mut stdin = child.stdin.take();
        let stderr = child.stderr.take();
        // Feed stdin, drain stderr and wait at once: a program that writes a lot of stderr
        // before reading its input must not deadlock against us.
        let feed = async move {
            if let Some(s) = stdin.as_mut() {
                // A program that exits without reading its input is not an error here; its
                // exit status decides.
                let _ = s.write_all(&input).await;
                let _ = s.shutdown().await;
            }
            drop(stdin);
        };
        let wait = async {
            let status = child.wait().await;
            // The program is done; whatever it started is killed now, which also closes
            // their copies of stderr so that the excerpt can end.
            group.kill();
            status
        };
        let (_, excerpt, status) = tokio::join!(feed, read_excerpt(stderr), wait);
        let status = status.map_err(|e| {
            ProcessError::retry(format!("waiting for {} failed: {e}", self.program))
        })?;
        if status.success() {
            return Ok(());
        }
        Err(ProcessError::retry(format!(
            "{} exited with {status}: {excerpt}",
            self.program
        )))
    }
}

/// The process group of a spawned program, killed when [`group::Guard::kill`] is called or
/// the guard is dropped (a timeout drops the whole future).
#[cfg(unix)]
mod group {
    use rustix::process::{kill_process_group, Pid, Signal};

    pub struct Guard(Option<Pid>);

    impl Guard {
        /// The group `child` leads (it was spawned with `process_group(0)`).
        pub fn of(child: &tokio::process::Child) -> Guard {
            // No PID means the child was already reaped: nothing of it is left to kill.
            // `from_raw` refuses 0 and negatives; PID 1 is never our child.
            let pid = child.id().and_then(|id| i32::try_from(id).ok());
            Guard(pid.filter(|p| *p > 1).and_then(Pid::from_raw))
        }

        /// Kills every process left in the group, once. The group's ID cannot be reused while
        /// any member lives, so this reaches only what the program started; a group already
        /// empty answers "no such process", which is the outcome wanted.
        pub fn kill(&mut self) {
            if let Some(pgid) = self.0.take() {
                let _ = kill_process_group(pgid, Signal::KILL);
            }
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.kill();
        }
    }
}

/// Elsewhere there are no process groups to kill; `kill_on_drop` still ends the program.
#[cfg(not(unix))]
mod group {
    pub struct Guard;

    impl Guard {
        pub fn of(_: &tokio::process::Child) -> Guard {
            Guard
        }

        pub fn kill(&mut self) {}
    }
}

/// The first [`MAX_EXCERPT`] bytes of a stream; the rest is read and discarded so that the
/// program never blocks on a full pipe.
async fn read_excerpt(stream: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut s) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut more = false;
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_EXCERPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        more |= n > room;
    }
    let text = String::from_utf8_lossy(&kept);
    let text = text.trim();
    match (text.is_empty(), more) {
        (true, _) => "(no stderr)".to_string(),
        (false, true) => format!("{text}…"),
        (false, false) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_checked_at_start_up() {
        assert!(CommandProcessor::new(vec!["./resize.sh".into()]).is_ok());
        assert!(CommandProcessor::new(vec![]).is_err());
        assert!(CommandProcessor::new(vec![" ".into()]).is_err());
        assert!(CommandProcessor::new(vec!["x".into(), "a\0b".into()]).is_err());
    }
}
