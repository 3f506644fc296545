//! `skiplock watch [--type T] [--batch B] [--json]`: status events as they happen, from every
//! node. Events travel between processes through Redis pub/sub, so this needs `--redis-url`.

use std::io::Write;

use anyhow::bail;
use futures::StreamExt;
use uuid::Uuid;

use super::Settings;
use crate::events::{Event, EventStatus};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only events of this job type.
    #[arg(long = "type")]
    pub job_type: Option<String>,
    /// Only events of this batch.
    #[arg(long)]
    pub batch: Option<Uuid>,
    /// Only events with this status: running, succeeded, failed or retrying.
    #[arg(long)]
    pub status: Option<EventStatusArg>,
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,
}

/// The statuses as clap values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EventStatusArg {
    Running,
    Succeeded,
    Failed,
    Retrying,
}

impl From<EventStatusArg> for EventStatus {
    fn from(s: EventStatusArg) -> Self {
        match s {
            EventStatusArg::Running => EventStatus::Running,
            EventStatusArg::Succeeded => EventStatus::Succeeded,
            EventStatusArg::Failed => EventStatus::Failed,
            EventStatusArg::Retrying => EventStatus::Retrying,
        }
    }
}

pub async fn run(s: &Settings, a: WatchArgs) -> anyhow::Result<()> {
    if s.redis_url.is_none() {
        bail!(
            "watch needs --redis-url (or SKIPLOCK_REDIS_URL): without Redis, status events \
             stay inside the worker process that produced them"
        );
    }
    let bus = s.bus().await?;
    let mut events = bus.subscribe().await?;
    let status = a.status.map(EventStatus::from);
    // Subscribed: say so on stderr, so a script (or a test) knows nothing after this is missed.
    eprintln!("watching status events (Ctrl-C to stop)");
    let mut out = std::io::stdout().lock();
    let stop = super::worker::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let e = tokio::select! {
            e = events.next() => match e { Some(e) => e, None => return Ok(()) },
            r = &mut stop => return r,
        };
        let wanted = a.job_type.as_ref().is_none_or(|t| *t == e.job_type)
            && a.batch.is_none_or(|b| e.batch_id == Some(b))
            && status.is_none_or(|s| s == e.status);
        if !wanted {
            continue;
        }
        let line = if a.json {
            serde_json::to_string(&e)?
        } else {
            render(&e)
        };
        // A closed pipe (`watch | head`) ends the command quietly.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
    }
}

/// `12:00:01.234  succeeded  TYPE  JOB  batch B  node N  [error]`.
fn render(e: &Event) -> String {
    let mut s = format!(
        "{}  {:<9}  {:<16}  {}",
        e.at.format("%H:%M:%S%.3f"),
        e.status.as_str(),
        e.job_type,
        e.job_id
    );
    if let Some(b) = e.batch_id {
        s.push_str(&format!("  batch {b}"));
    }
    s.push_str(&format!("  node {}", e.node));
    if let Some(err) = &e.error {
        s.push_str(&format!("  error: {}", err.replace('\n', " ")));
    }
    s
}
