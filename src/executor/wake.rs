//! When an idle runner should look for work again: the store's own notifications (PostgreSQL
//! NOTIFY, SQLite's `data_version`), alarms for jobs known to come due later (a retry this
//! node scheduled, a job inserted for later), and, failing both, the poll interval.
//!
//! Runners watch one counter. Each marks the value it has seen before it claims, so a wake-up
//! that arrives while it is claiming is not lost: its next wait returns at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::Wake;

/// Alarms kept at once. More distinct due times than this (a burst of retries with jittered
/// backoff) are dropped, latest first: the poll interval still finds those jobs.
const MAX_ALARMS: usize = 1024;

/// The node's wake-up signal, shared by its runners.
#[derive(Clone)]
pub(crate) struct Wakeups {
    tx: Arc<watch::Sender<u64>>,
    alarms: Arc<Mutex<BTreeSet<Instant>>>,
    /// Tells the alarm task that an earlier alarm was set.
    changed: Arc<Notify>,
}

impl Wakeups {
    /// Starts the tasks that turn the store's notifications and due alarms into wake-ups.
    pub fn start(
        tasks: &mut JoinSet<()>,
        stop: CancellationToken,
        store: Option<BoxStream<'static, Wake>>,
    ) -> Self {
        let w = Wakeups {
            tx: Arc::new(watch::channel(0).0),
            alarms: Arc::new(Mutex::new(BTreeSet::new())),
            changed: Arc::new(Notify::new()),
        };
        if let Some(mut stream) = store {
            let (w, stop) = (w.clone(), stop.clone());
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        next = stream.next() => match next {
                            Some(Wake::Now) => w.now(),
                            Some(Wake::At(t)) => w.at_time(t),
                            None => return,
                        },
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        let w2 = w.clone();
        tasks.spawn(async move { w2.ring_alarms(stop).await });
        w
    }

    /// A receiver for one runner.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Work may be due now.
    pub fn now(&self) {
        self.tx.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Work comes due at `at` (a retry's backoff ends, a scheduled job's time comes).
    pub fn at(&self, at: Instant) {
        let earliest = {
            let mut a = self.alarms.lock().unwrap_or_else(|e| e.into_inner());
            a.insert(at);
            while a.len() > MAX_ALARMS {
                a.pop_last();
            }
            a.first() == Some(&at)
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    fn at_time(&self, t: chrono::DateTime<chrono::Utc>) {
        let wait = (t - chrono::Utc::now()).to_std().unwrap_or_default();
        self.at(Instant::now() + wait);
    }

    /// Sleeps until the earliest alarm, rings it, and so on until `stop`.
    async fn ring_alarms(&self, stop: CancellationToken) {
        loop {
            let next = self
                .alarms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first()
                .copied();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    let now = Instant::now();
                    let mut a = self.alarms.lock().unwrap_or_else(|e| e.into_inner());
                    while a.first().is_some_and(|t| *t <= now) {
                        a.pop_first();
                    }
                    drop(a);
                    self.now();
                }
                _ = self.changed.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
