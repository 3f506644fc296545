//! The retention flags of `worker` and `serve`, over the config file's `[retention]` table.

use anyhow::Context as _;

use crate::config::FileConfig;
use crate::job::JobStatus;
use crate::maintenance::retention::{parse_keep, Retention};

/// How long finished jobs are kept. Durations are a whole number and a unit (`90s`, `15m`,
/// `36h`, `7d`) or `never`; each flag beats the config file's `[retention]` table.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RetentionArgs {
    /// Keep succeeded jobs this long (90s, 15m, 36h, 7d or never) [default: 7d]
    #[arg(long, env = "SKIPLOCK_RETENTION_SUCCEEDED")]
    pub retention_succeeded: Option<String>,
    /// Keep failed jobs this long [default: 7d]
    #[arg(long, env = "SKIPLOCK_RETENTION_FAILED")]
    pub retention_failed: Option<String>,
    /// Keep cancelled jobs this long [default: 7d]
    #[arg(long, env = "SKIPLOCK_RETENTION_CANCELLED")]
    pub retention_cancelled: Option<String>,
    /// A type's own retention, TYPE:STATUS=DURATION or TYPE=DURATION (every finished status);
    /// repeat the flag, or separate with commas in the variable
    #[arg(
        long = "retention-type",
        env = "SKIPLOCK_RETENTION_TYPES",
        value_delimiter = ','
    )]
    pub retention_type: Vec<String>,
}

impl RetentionArgs {
    /// The policy: defaults, then the file, then these flags.
    pub fn resolve(&self, file: &FileConfig) -> anyhow::Result<Retention> {
        let mut r = file.retention()?;
        for (flag, status, v) in [
            (
                "--retention-succeeded",
                JobStatus::Succeeded,
                &self.retention_succeeded,
            ),
            (
                "--retention-failed",
                JobStatus::Failed,
                &self.retention_failed,
            ),
            (
                "--retention-cancelled",
                JobStatus::Cancelled,
                &self.retention_cancelled,
            ),
        ] {
            if let Some(v) = v {
                let keep = parse_keep(v.trim())
                    .map_err(anyhow::Error::msg)
                    .context(flag)?;
                r.set(status, keep).map_err(anyhow::Error::msg)?;
            }
        }
        for spec in &self.retention_type {
            r.apply_override(spec).map_err(anyhow::Error::msg)?;
        }
        Ok(r)
    }
}
