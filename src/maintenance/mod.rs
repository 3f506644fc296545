//! Background services every node runs beside its workers. Each has the same shape: a
//! `Config` with documented defaults validated in `new()`, a `run_once()` that returns
//! counts, and a loop that logs only what changed and stops on the shutdown signal.

pub mod cron;
mod heartbeat;
mod pruner;
mod reconciler;
pub mod retention;
pub mod schedule;
mod unrunnable;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use cron::{Cron, CronEntry, CronStatus};
pub use heartbeat::{Heartbeat, HeartbeatConfig};
pub use pruner::{Pruner, PrunerConfig};
pub use reconciler::{Reconciled, Reconciler, ReconcilerConfig};
pub use retention::{Keep, Retention};
pub use unrunnable::{UnrunnableConfig, UnrunnableJobs};

/// Runs `once` every `every` until `stop`, logging failures only when they start and end, so
/// an outage yields two lines, not one per tick.
pub(crate) async fn tick_loop<F, Fut>(
    name: &'static str,
    every: Duration,
    stop: CancellationToken,
    mut once: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<()>>,
{
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.cancelled() => return,
        }
        match once().await {
            Ok(()) if failing => {
                failing = false;
                warn!(service = name, "recovered");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                warn!(service = name, error = %e, "failing; will keep retrying");
            }
            Err(_) => {}
        }
    }
}
