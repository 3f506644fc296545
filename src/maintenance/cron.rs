//! Cron: every node evaluates every schedule, and the database decides which node inserts
//! each tick. There is no leader to elect or lose.
//!
//! Each entry has a mark in the `cron` table, the last tick claimed. A node that finds ticks
//! due (per [`schedule::plan`]) moves the mark from the value it read to the latest of them
//! and inserts their jobs in the same transaction ([`Store::cron_claim`]). Compare-and-set on
//! one row: of any number of nodes exactly one moves it, the others change nothing and insert
//! nothing. The mark never moves back, so a tick never runs twice, even after its job finished
//! and was pruned; and the ticks between the mark and the clock are exactly the ones missed
//! while no node ran, which `catch_up` decides about. A new entry's mark starts at the latest
//! tick before it was first seen: an entry does not catch up on its own past.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::schedule::{plan, CatchUp, Schedule};
use crate::error::{Error, Result};
use crate::job::{validate_target, validate_type, Due, NewJob};
use crate::processor::Policy;
use crate::queue::Queue;
use crate::store::Store;

/// One scheduled job: `job_type` with `target`, at every tick of `schedule`.
#[derive(Debug, Clone)]
pub struct CronEntry {
    pub name: String,
    pub schedule: Schedule,
    pub job_type: String,
    pub target: serde_json::Value,
    pub catch_up: CatchUp,
}

impl CronEntry {
    /// An entry; every part is checked, and the error names the entry and what is wrong.
    pub fn new(
        name: &str,
        schedule: &str,
        timezone: &str,
        job_type: &str,
        target: serde_json::Value,
    ) -> Result<Self> {
        let bad = |e: String| Error::Config(format!("[cron.{name}]: {e}"));
        validate_name(name).map_err(|e| Error::Config(format!("cron entry: {e}")))?;
        let schedule = Schedule::parse(schedule, timezone).map_err(bad)?;
        validate_type(job_type).map_err(|e| bad(format!("type: {e}")))?;
        validate_target(&target).map_err(|e| bad(format!("target: {e}")))?;
        Ok(CronEntry {
            name: name.to_string(),
            schedule,
            job_type: job_type.to_string(),
            target,
            catch_up: CatchUp::default(),
        })
    }

    pub fn catch_up(mut self, c: CatchUp) -> Self {
        self.catch_up = c;
        self
    }

    /// The job for one tick: due at the tick, its target as configured.
    fn job(&self, tick: DateTime<Utc>) -> NewJob {
        NewJob::new(&self.job_type, self.target.clone()).run_at(tick)
    }
}

/// Entry names key the `cron` table and appear in URLs: short identifiers.
fn validate_name(n: &str) -> std::result::Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 200
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {:?} must be 1 to 200 ASCII letters, digits, '_', '-', '.' or ':'",
            n.chars().take(60).collect::<String>()
        ))
    }
}

/// Checks a set of entries together: names are unique, and a target carries the fields its
/// type's unique key is made of (else every tick's insert would be refused).
pub fn validate_entries(entries: &[CronEntry], policy: &Policy) -> Result<()> {
    let mut seen = HashSet::new();
    for e in entries {
        if !seen.insert(e.name.as_str()) {
            return Err(Error::Config(format!(
                "cron entry {:?} is declared twice",
                e.name
            )));
        }
        if let Some(u) = policy.unique(&e.job_type) {
            let obj = e.target.as_object();
            if let Some(f) = u
                .fields
                .iter()
                .find(|f| !obj.is_some_and(|o| o.contains_key(*f)))
            {
                return Err(Error::Config(format!(
                    "[cron.{}]: the target has no field {f:?}, which type {}'s unique key is made of",
                    e.name, e.job_type
                )));
            }
        }
    }
    Ok(())
}

/// One entry as `cron list`, the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CronStatus {
    pub name: String,
    pub schedule: String,
    pub timezone: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub target: serde_json::Value,
    pub catch_up: CatchUp,
    /// The last tick claimed (its job inserted, or skipped by `catch_up`); `null` before the
    /// entry was first seen by a node.
    pub last_tick: Option<DateTime<Utc>>,
    /// The next tick after now.
    pub next_tick: Option<DateTime<Utc>>,
}

/// Each entry with its last and next tick at `now`.
pub async fn statuses(
    store: &dyn Store,
    entries: &[CronEntry],
    now: DateTime<Utc>,
) -> Result<Vec<CronStatus>> {
    let marks: HashMap<String, DateTime<Utc>> = store.cron_marks().await?.into_iter().collect();
    Ok(entries
        .iter()
        .map(|e| CronStatus {
            name: e.name.clone(),
            schedule: e.schedule.pattern().to_string(),
            timezone: e.schedule.zone().name().to_string(),
            job_type: e.job_type.clone(),
            target: e.target.clone(),
            catch_up: e.catch_up,
            last_tick: marks.get(&e.name).copied(),
            next_tick: e.schedule.next_after(now),
        })
        .collect())
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CronCounts {
    /// Jobs this node inserted.
    pub inserted: u64,
    /// Ticks this node claimed without a job (missed, and `catch_up` said skip them).
    pub skipped: u64,
    /// Claims another node won first.
    pub lost: u64,
}

/// Longest a node sleeps between evaluations: it wakes for the next tick anyway; this only
/// bounds how long a clock jump (a suspended host) goes unnoticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Most skipped ticks one evaluation counts (for its log line).
const MAX_COUNTED: usize = 10_000;
/// Wait after a failed evaluation (the database away) before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The cron service of one node.
pub struct Cron {
    store: Arc<dyn Store>,
    entries: Vec<CronEntry>,
}

impl Cron {
    pub fn new(store: Arc<dyn Store>, entries: Vec<CronEntry>, policy: &Policy) -> Result<Self> {
        validate_entries(&entries, policy)?;
        Ok(Cron { store, entries })
    }

    pub fn entries(&self) -> &[CronEntry] {
        &self.entries
    }

    /// Evaluates every entry at `now` (the caller's clock), claiming and inserting what is
    /// due. Returns the jobs this node inserted (each with its queue), for the caller to queue.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<(CronCounts, Vec<Due>)> {
        let marks: HashMap<String, DateTime<Utc>> =
            self.store.cron_marks().await?.into_iter().collect();
        let mut counts = CronCounts::default();
        let mut ids = Vec::new();
        for e in &self.entries {
            let (from, to, jobs) = match marks.get(&e.name) {
                None => {
                    let start = e.schedule.last_at_or_before(now).unwrap_or(now);
                    (None, start, Vec::new())
                }
                Some(&last) => match plan(&e.schedule, last, now, e.catch_up) {
                    None => continue,
                    Some(p) => {
                        // Counted for the log only, so bounded: a year of missed per-second
                        // ticks must not be walked one by one to be skipped.
                        let seen = e.schedule.ticks(last, p.mark, MAX_COUNTED).len();
                        counts.skipped += seen.saturating_sub(p.run.len()) as u64;
                        let jobs: Vec<NewJob> = p.run.iter().map(|t| e.job(*t)).collect();
                        (Some(last), p.mark, jobs)
                    }
                },
            };
            match self.store.cron_claim(&e.name, from, to, &jobs).await? {
                Some(done) => {
                    counts.inserted += done.iter().filter(|i| !i.duplicate).count() as u64;
                    ids.extend(done.into_iter().filter(|i| !i.duplicate).map(|i| Due {
                        id: i.id,
                        priority: 0,
                        queue: i.queue,
                    }));
                }
                None => counts.lost += 1,
            }
        }
        Ok((counts, ids))
    }

    /// When the next evaluation is due after `now`: the earliest next tick of any entry.
    fn next_wake(&self, now: DateTime<Utc>) -> Duration {
        self.entries
            .iter()
            .filter_map(|e| e.schedule.next_after(now))
            .min()
            .and_then(|t| t.signed_duration_since(now).to_std().ok())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    /// Evaluates at each tick until `stop`, pushing the jobs this node inserted to `queue`
    /// (a hint: the insert's notification wakes runners anyway).
    pub async fn run(self: Arc<Self>, stop: CancellationToken, queue: Arc<dyn Queue>) {
        let mut failing = false;
        loop {
            let now = Utc::now();
            let wait = match self.run_once(now).await {
                Ok((c, due)) => {
                    if failing {
                        failing = false;
                        warn!(service = "cron", "recovered");
                    }
                    if c.inserted > 0 || c.skipped > 0 {
                        info!(
                            inserted = c.inserted,
                            skipped = c.skipped,
                            "cron ticks claimed"
                        );
                    }
                    if !due.is_empty() {
                        if let Err(e) = queue.push(&due).await {
                            warn!(error = %e, "cron: queue push failed; runners will claim the jobs");
                        }
                    }
                    self.next_wake(Utc::now())
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        warn!(service = "cron", error = %e, "failing; will keep retrying");
                    }
                    RETRY_AFTER
                }
            };
            tokio::select! {
                // A few milliseconds past the tick, so that the clock has surely reached it.
                _ = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
