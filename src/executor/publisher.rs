//! Hands events from workers to the bus without making a worker wait on Redis: workers send
//! into a bounded channel; one task drains it and publishes in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::warn;

use crate::events::{Event, EventBus};

/// Event batches that may wait for the publisher. Workers send one message per `running`
/// event, so a node at full speed (16 workers x 50-job chunks) sends hundreds per Redis round
/// trip: the backlog must absorb such bursts. When full, events are dropped: events are a
/// live view, the database is the record.
const BACKLOG: usize = 16_384;
/// Events merged into one publish.
const MAX_BATCH: usize = 2048;
/// At most one "dropped events" warning per this period, with the count since the last.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Vec<Event>>,
    bus: Arc<dyn EventBus>,
    /// Events dropped because the backlog was full, reported (and reset) by the publisher.
    dropped: Arc<AtomicU64>,
}

impl Sender {
    /// Whether the bus may have listeners; workers build no events when it has none.
    pub fn has_listeners(&self) -> bool {
        self.bus.has_listeners()
    }

    pub fn send(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(events) {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

pub(crate) fn spawn(set: &mut JoinSet<()>, bus: Arc<dyn EventBus>) -> Sender {
    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(BACKLOG);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let sender = Sender {
        tx,
        bus: bus.clone(),
        dropped,
    };
    set.spawn(async move {
        let mut failing = false;
        let mut last_drop_log: Option<Instant> = None;
        while let Some(mut batch) = rx.recv().await {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            match bus.publish(batch).await {
                Ok(()) if failing => {
                    failing = false;
                    warn!("status events flowing again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    warn!(error = %e, "cannot publish status events (jobs are unaffected)");
                }
                Err(_) => {}
            }
            if last_drop_log.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
                let n = counter.swap(0, Ordering::Relaxed);
                if n > 0 {
                    last_drop_log = Some(Instant::now());
                    warn!(
                        dropped = n,
                        "event backlog full: dropped status events (jobs are unaffected)"
                    );
                }
            }
        }
    });
    sender
}
