//! `submit --wait`: a progress bar over a batch until every job in it has finished.

use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::store::Store;

/// How often the batch's counts are read: often enough to look live, rarely enough that a
/// waiting terminal costs the database next to nothing.
const POLL: Duration = Duration::from_millis(250);

/// Draws the batch's progress (on stderr, when it is a terminal) until it finishes; fails
/// when any job ended `failed`.
pub async fn batch(store: &dyn Store, id: Uuid) -> anyhow::Result<()> {
    let first = store
        .batch(id)
        .await?
        .with_context(|| format!("batch {id} not found"))?;
    let bar = ProgressBar::new(first.total.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let report = loop {
        let b = store
            .batch(id)
            .await?
            .with_context(|| format!("batch {id} disappeared while waiting"))?;
        bar.set_position((b.total - b.pending).max(0) as u64);
        bar.set_message(format!("{} succeeded, {} failed", b.succeeded, b.failed));
        if b.is_finished() {
            break b;
        }
        tokio::time::sleep(POLL).await;
    };
    bar.finish_and_clear();
    eprintln!(
        "batch {id}: {} succeeded, {} failed, {} cancelled of {}",
        report.succeeded, report.failed, report.cancelled, report.total
    );
    if report.failed > 0 {
        bail!(
            "{} of {} jobs in batch {id} failed (see `skiplock jobs list --batch {id} --status failed`)",
            report.failed,
            report.total
        );
    }
    Ok(())
}
