//! The status report: counts by type × status, per batch, per node, queue depth and recent
//! throughput. The store fills it; this module renders it for people.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Jobs of one type, by status. Read straight from either store's type-count query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TypeCounts {
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub job_type: String,
    pub pending: i64,
    /// Lease-mode jobs running right now.
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// A batch's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct BatchReport {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub job_type: String,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub pending: i64,
    /// Finished share of the batch, 0.0 to 1.0.
    pub progress: f64,
    pub created_at: DateTime<Utc>,
}

impl BatchReport {
    pub fn is_finished(&self) -> bool {
        self.pending == 0
    }

    /// Fills `pending` and `progress` from the other counts.
    pub fn derive(mut self) -> Self {
        let done = self.succeeded + self.failed + self.cancelled;
        self.pending = (self.total - done).max(0);
        self.progress = if self.total == 0 {
            1.0
        } else {
            done as f64 / self.total as f64
        };
        self
    }
}

/// A live node, from its last heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeReport {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub concurrency: i32,
    pub in_flight: i32,
    pub processed: i64,
    pub failed: i64,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    /// The queues it serves, with each one's runners.
    pub queues: std::collections::BTreeMap<String, usize>,
    /// The job types it has processors for.
    pub types: Vec<String>,
}

/// Pending jobs of one queue and type that no live node can run: none serves the queue with
/// a processor for the type. They wait, uncharged, until such a node starts (or, with
/// `--fail-unrunnable-after`, fail once no node has known their type for that long).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Unrunnable {
    pub queue: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub pending: i64,
    /// The earliest `run_at` among them.
    pub since: DateTime<Utc>,
    /// How long the oldest has been due, in seconds (0 while none is due yet).
    pub waiting_secs: f64,
    /// Whether some live node has a processor for the type (in another queue).
    pub type_known: bool,
    /// Whether some live node serves the queue (without a processor for the type).
    pub queue_served: bool,
}

/// Jobs finished per second, recently, over three windows: the live rate (10 s) moves within
/// seconds of a burst starting or ending, the longer ones smooth it. Each is the jobs
/// finished in its window divided by the window's length, so a 4-second burst of 328 jobs
/// reads 32.8 jobs/s over the last 10 s and 5.5 over the last minute; ten seconds after it
/// ends the live rate is back to 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Throughput {
    /// Mean over the last 10 seconds (a sliding window ending now).
    pub last_10s_per_sec: f64,
    /// Mean over the last 60 seconds.
    pub last_minute_per_sec: f64,
    /// Mean over the last 5 minutes.
    pub last_5min_per_sec: f64,
    /// Jobs finished in each of the last 30 ten-second buckets, oldest first.
    pub buckets_10s: Vec<i64>,
}

impl Throughput {
    /// Builds the report's throughput from (bucket, jobs) rows, bucket 29 the latest ten
    /// seconds; rows outside 0..30 are ignored.
    pub fn from_buckets(rows: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut buckets = vec![0_i64; 30];
        for (b, n) in rows {
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| buckets.get_mut(b)) {
                *slot += n;
            }
        }
        // Buckets are measured back from now (bucket 29 is (now - 10 s, now]), not aligned to
        // the clock, so the newest one is exactly the last ten seconds.
        let last_minute: i64 = buckets[24..].iter().sum();
        let last_5min: i64 = buckets.iter().sum();
        Throughput {
            last_10s_per_sec: buckets[29] as f64 / 10.0,
            last_minute_per_sec: last_minute as f64 / 60.0,
            last_5min_per_sec: last_5min as f64 / 300.0,
            buckets_10s: buckets,
        }
    }
}

/// How the jobs table is kept (PostgreSQL): what autovacuum has to keep up with, and what
/// keeps it from doing so. Dead rows are the old versions every completed job leaves behind;
/// autovacuum removes them, unless it is off or an old transaction still might see them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TableHealth {
    /// Live and dead row versions of `jobs`, as the statistics collector counts them.
    pub live_rows: i64,
    pub dead_rows: i64,
    /// When autovacuum (or a manual VACUUM) last cleaned `jobs`.
    pub last_vacuum: Option<DateTime<Utc>>,
    /// Whether autovacuum runs for `jobs` (the server setting and the table's own).
    pub autovacuum: bool,
    /// Age in seconds of the oldest transaction open on the server (that this role can see),
    /// other than the report's own: while it stays open, no dead row newer than it can go.
    pub oldest_transaction_secs: Option<f64>,
}

impl TableHealth {
    /// What an operator should hear about, if anything.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.autovacuum {
            w.push(
                "autovacuum is off for the jobs table: dead rows pile up and every scan slows; \
                 turn it on (see the README's performance section)"
                    .to_string(),
            );
        }
        if let Some(secs) = self.oldest_transaction_secs.filter(|s| *s >= 60.0) {
            w.push(format!(
                "a transaction has been open for {secs:.0} s: no dead row newer than it can be \
                 cleaned until it ends (a session idle in transaction?)"
            ));
        }
        let total = self.live_rows + self.dead_rows;
        if total >= 100_000 && self.dead_rows * 2 > total {
            w.push(format!(
                "{} of the jobs table's {} row versions are dead: autovacuum is falling behind",
                self.dead_rows, total
            ));
        }
        w
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct StatusReport {
    pub types: Vec<TypeCounts>,
    pub batches: Vec<BatchReport>,
    pub nodes: Vec<NodeReport>,
    /// Pending jobs no live node can run, by queue and type, oldest first.
    #[serde(default)]
    pub unrunnable: Vec<Unrunnable>,
    /// IDs waiting in the queue; `None` when the queue could not be asked.
    pub queue_depth: Option<u64>,
    pub throughput: Throughput,
    /// The jobs table's upkeep (PostgreSQL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<TableHealth>,
    pub generated_at: DateTime<Utc>,
}

impl StatusReport {
    /// A readable table for terminals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "TYPE", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
        );
        if self.types.is_empty() {
            let _ = writeln!(out, "(no jobs)");
        }
        for t in &self.types {
            let _ = writeln!(
                out,
                "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10}",
                t.job_type, t.pending, t.running, t.succeeded, t.failed, t.cancelled
            );
        }
        if !self.batches.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<36} {:<16} {:>8} {:>9} {:>7} {:>8} {:>6}",
                "BATCH", "NAME", "TOTAL", "SUCCEEDED", "FAILED", "PENDING", "DONE"
            );
            for b in &self.batches {
                let _ = writeln!(
                    out,
                    "{:<36} {:<16} {:>8} {:>9} {:>7} {:>8} {:>5.1}%",
                    b.id,
                    truncate(b.name.as_deref().unwrap_or("-"), 16),
                    b.total,
                    b.succeeded,
                    b.failed,
                    b.pending,
                    b.progress * 100.0
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:>6} {:>9} {:>10} {:>8}  LAST HEARTBEAT  QUEUES",
            "NODE", "HOST", "CONC", "IN FLIGHT", "PROCESSED", "FAILED"
        );
        if self.nodes.is_empty() {
            let _ = writeln!(out, "(no live nodes)");
        }
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "{:<40} {:<16} {:>6} {:>9} {:>10} {:>8}  {:<14}  {}",
                n.id,
                truncate(&n.host, 16),
                n.concurrency,
                n.in_flight,
                n.processed,
                n.failed,
                n.last_heartbeat.format("%H:%M:%S"),
                n.queues
                    .iter()
                    .map(|(q, c)| format!("{q}={c}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        if !self.unrunnable.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "NO LIVE NODE CAN RUN THESE (pending, uncharged):\n{:<24} {:<24} {:>10} {:>12}  WHY",
                "QUEUE", "TYPE", "PENDING", "WAITING"
            );
            for u in &self.unrunnable {
                let why = match (u.type_known, u.queue_served) {
                    (false, _) => "no node has a processor for the type",
                    (true, false) => "no node serves the queue",
                    (true, true) => "no node serving the queue has a processor for the type",
                };
                let _ = writeln!(
                    out,
                    "{:<24} {:<24} {:>10} {:>11.0}s  {why}",
                    truncate(&u.queue, 24),
                    truncate(&u.job_type, 24),
                    u.pending,
                    u.waiting_secs
                );
            }
        }
        let _ = writeln!(out);
        let depth = self
            .queue_depth
            .map_or_else(|| "unknown".to_string(), |d| d.to_string());
        let t = &self.throughput;
        let _ = writeln!(
            out,
            "queue depth: {depth}   jobs/s: {:.1} (last 10 s)  {:.1} (last minute)  {:.1} (last 5 min)",
            t.last_10s_per_sec, t.last_minute_per_sec, t.last_5min_per_sec
        );
        if let Some(h) = &self.health {
            let vacuumed = h.last_vacuum.map_or_else(
                || "never".to_string(),
                |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
            );
            let oldest = h
                .oldest_transaction_secs
                .map_or_else(|| "none".to_string(), |s| format!("{s:.1} s"));
            let _ = writeln!(
                out,
                "jobs table: {} live rows, {} dead   last vacuum: {vacuumed}   autovacuum: {}   \
                 oldest open transaction: {oldest}",
                h.live_rows,
                h.dead_rows,
                if h.autovacuum { "on" } else { "OFF" }
            );
            for w in h.warnings() {
                let _ = writeln!(out, "warning: {w}");
            }
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_upkeep_warns_about_what_keeps_dead_rows() {
        let fine = TableHealth {
            live_rows: 1_000_000,
            dead_rows: 10_000,
            last_vacuum: None,
            autovacuum: true,
            oldest_transaction_secs: Some(0.2),
        };
        assert!(fine.warnings().is_empty());
        let off = TableHealth {
            autovacuum: false,
            ..fine.clone()
        };
        assert!(off.warnings()[0].contains("autovacuum is off"));
        let pinned = TableHealth {
            oldest_transaction_secs: Some(600.0),
            ..fine.clone()
        };
        assert!(pinned.warnings()[0].contains("open for 600 s"));
        let behind = TableHealth {
            dead_rows: 3_000_000,
            ..fine
        };
        assert!(behind.warnings()[0].contains("falling behind"));
    }

    #[test]
    fn a_short_burst_shows_in_the_live_rate() {
        // 328 jobs in the last few seconds: the live window says so, the minute dilutes it.
        let t = Throughput::from_buckets([(29, 328)]);
        assert_eq!(t.last_10s_per_sec, 32.8);
        assert!((t.last_minute_per_sec - 328.0 / 60.0).abs() < 1e-9);
        assert!((t.last_5min_per_sec - 328.0 / 300.0).abs() < 1e-9);
        // Ten seconds on, the burst has left the live window but not the minute.
        let t = Throughput::from_buckets([(28, 328)]);
        assert_eq!(t.last_10s_per_sec, 0.0);
        assert!(t.last_minute_per_sec > 5.0);
        // Rows outside the window are ignored.
        let t = Throughput::from_buckets([(-1, 5), (30, 5), (0, 300)]);
        assert_eq!(t.buckets_10s.iter().sum::<i64>(), 300);
        assert_eq!(t.last_5min_per_sec, 1.0);
    }
}
