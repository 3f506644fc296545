//! `skiplock status [--batch ID] [--json]`.

use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use super::Settings;

/// A node silent this long is left out of the report.
pub const NODE_STALE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this batch.
    #[arg(long)]
    pub batch: Option<Uuid>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(s: &Settings, a: StatusArgs) -> anyhow::Result<()> {
    // A broken `[types]` entry is refused here as `worker` refuses it: the file is wrong
    // whichever command reads it.
    s.registry()?;
    let store = s.store(2, false).await?;
    if let Some(id) = a.batch {
        let b = store
            .batch(id)
            .await?
            .with_context(|| format!("batch {id} not found"))?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&b)?);
        } else {
            println!(
                "batch {} ({}, {}): {} total, {} succeeded, {} failed, {} cancelled, {} pending, {:.1}% done",
                b.id,
                b.name.as_deref().unwrap_or("unnamed"),
                b.job_type,
                b.total,
                b.succeeded,
                b.failed,
                b.cancelled,
                b.pending,
                b.progress * 100.0
            );
        }
        return Ok(());
    }
    let mut report = store.report(NODE_STALE).await?;
    if let Ok(q) = s.queue().await {
        if q.backend() != "memory" {
            report.queue_depth = q.depth().await.ok();
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
