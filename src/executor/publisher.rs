//! Hands events from workers to the bus without making a worker wait on Redis: workers send
//! into a bounded channel; one task drains it and publishes in batches.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::warn;

use crate::events::{Event, EventBus};

/// Event batches that may wait for the publisher. When full, events are dropped (counted
/// nowhere but the log): events are a live view, the database is the record.
const BACKLOG: usize = 1024;
/// Events merged into one publish.
const MAX_BATCH: usize = 2048;

#[derive(Clone)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Vec<Event>>,
    bus: Arc<dyn EventBus>,
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
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(events) {
            warn!("event backlog full: dropping status events (jobs are unaffected)");
        }
    }
}

pub(crate) fn spawn(set: &mut JoinSet<()>, bus: Arc<dyn EventBus>) -> Sender {
    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(BACKLOG);
    let sender = Sender {
        tx,
        bus: bus.clone(),
    };
    set.spawn(async move {
        let mut failing = false;
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
        }
    });
    sender
}
