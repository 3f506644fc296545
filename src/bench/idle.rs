//! Idle transaction: what one forgotten `BEGIN` elsewhere does to a busy queue. Under a steady
//! external load (jobs inserted by another connection at a fixed rate), a clean stretch gives
//! the baseline; then another session runs `BEGIN; SELECT txid_current();` and sits idle in
//! that transaction, which pins the xmin horizon: vacuum can reclaim no row version deleted
//! after it began, so dead tuples pile up in `jobs` and the intent records. Then it ends, and the phase
//! measures how long the queue takes to be back to its baseline.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::health::{self, TableHealth};
use super::load::{percentile, Load, Window};
use super::{BenchConfig, Line, Scratch};
use crate::error::{Error, Result};
use crate::executor::ExecutorConfig;
use crate::queue::Queue;
use crate::store::Store;

/// The longest window; shorter runs use a quarter of the idle time, at least a second.
pub const MAX_WINDOW: Duration = Duration::from_secs(10);
/// The longest clean stretch before the idle transaction.
pub const MAX_CLEAN: Duration = Duration::from_secs(60);
/// During the idle transaction the queue should still take this share of the offered load…
pub const KEEP_UP: f64 = 0.9;
/// …and start 99% of jobs within this.
pub const P99_LIMIT_MS: f64 = 1000.0;

#[derive(Debug, Clone, Serialize)]
pub struct IdleWindow {
    /// `clean`, `idle` (the transaction is open) or `recovery`.
    pub phase: &'static str,
    #[serde(flatten)]
    pub load: Window,
    /// Pending jobs, from the report's counters.
    pub backlog: i64,
    #[serde(flatten)]
    pub health: TableHealth,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleTx {
    pub offered_jobs_per_sec: f64,
    pub clean_secs: f64,
    pub idle_secs: f64,
    pub window_secs: f64,
    pub windows: Vec<IdleWindow>,
    /// Over the whole idle stretch: jobs run per second, as a share of those offered.
    pub idle_throughput_ratio: f64,
    /// Pickup p99 over every job started during the idle stretch.
    pub idle_pickup_p99_ms: f64,
    /// Both of the above within bounds ([`KEEP_UP`], [`P99_LIMIT_MS`]).
    pub kept_up: bool,
    /// Seconds from the transaction's end to the end of the first window back at baseline
    /// (backlog and pickup p99 within twice the clean stretch's); `None`: not within
    /// `recovery_limit_secs`.
    pub recovered_after_secs: Option<f64>,
    pub recovery_limit_secs: f64,
}

/// The `application_name` of the session left idle in its transaction by process `pid`.
pub fn idle_session_name(pid: u32) -> String {
    format!("skiplock bench idle-tx {pid}")
}

/// The window and clean-stretch lengths for an idle transaction of `idle`.
pub fn stretches(idle: Duration) -> (Duration, Duration) {
    let window = (idle / 4).clamp(Duration::from_secs(1), MAX_WINDOW);
    let clean = (idle / 3).clamp(window * 2, MAX_CLEAN.max(window * 2));
    (window, clean)
}

pub async fn measure(
    cfg: &BenchConfig,
    idle: Duration,
    rate: f64,
    queue: Arc<dyn Queue>,
    line: &Line,
) -> Result<IdleTx> {
    let (window, clean) = stretches(idle);
    let recovery_limit = idle.max(window * 3);
    line(&format!(
        "idle transaction: {rate:.0} jobs/s offered; {}s clean, {}s with a transaction left \
         open, then up to {}s of recovery, a line every {}s",
        clean.as_secs_f64(),
        idle.as_secs_f64(),
        recovery_limit.as_secs_f64(),
        window.as_secs_f64()
    ));
    let pool = ExecutorConfig::default().concurrency as u32 + 6;
    let s = Scratch::new(cfg, pool).await?;
    let mut load = Load::start(cfg, &s, queue, rate).await?;
    let mut tick = tokio::time::interval(window);
    tick.tick().await;
    let mut run = Run {
        load: &mut load,
        s: &s,
        tick,
        line,
        rows: Vec::new(),
    };
    let result = phases(&mut run, cfg, idle, clean, recovery_limit, rate).await;
    let rows = std::mem::take(&mut run.rows);
    let stopped = load.stop().await;
    // The scratch schema goes whatever happened; the first error is the one reported.
    let dropped = s.drop_schema().await;
    let (idle_ratio, idle_p99, recovered) =
        result.and_then(|r| stopped.and(dropped).map(|()| r))?;
    Ok(IdleTx {
        offered_jobs_per_sec: rate,
        clean_secs: clean.as_secs_f64(),
        idle_secs: idle.as_secs_f64(),
        window_secs: window.as_secs_f64(),
        windows: rows,
        idle_throughput_ratio: idle_ratio,
        idle_pickup_p99_ms: idle_p99,
        kept_up: idle_ratio >= KEEP_UP && idle_p99 < P99_LIMIT_MS,
        recovered_after_secs: recovered,
        recovery_limit_secs: recovery_limit.as_secs_f64(),
    })
}

struct Run<'a> {
    load: &'a mut Load,
    s: &'a Scratch,
    /// Ends each window, whatever the readings in between cost.
    tick: tokio::time::Interval,
    line: &'a Line,
    rows: Vec<IdleWindow>,
}

impl Run<'_> {
    /// Waits out one window and records it; returns its pickup latencies.
    async fn step(&mut self, phase: &'static str) -> Result<Vec<f64>> {
        self.tick.tick().await;
        let (load, ms) = self.load.window()?;
        let store: Arc<dyn Store> = self.s.store.clone();
        let backlog = store
            .type_counts()
            .await?
            .iter()
            .map(|t| t.pending + t.running)
            .sum();
        let row = IdleWindow {
            phase,
            load,
            backlog,
            health: health::read(self.s.store.pool(), &self.s.schema).await?,
        };
        (self.line)(&row.render());
        self.rows.push(row);
        Ok(ms)
    }
}

/// Clean, idle, recovery. Returns the idle stretch's throughput ratio and pickup p99, and
/// the recovery time.
async fn phases(
    run: &mut Run<'_>,
    cfg: &BenchConfig,
    idle: Duration,
    clean: Duration,
    recovery_limit: Duration,
    rate: f64,
) -> Result<(f64, f64, Option<f64>)> {
    let until = Instant::now() + clean;
    while Instant::now() < until {
        run.step("clean").await?;
    }
    let base = baseline(&run.rows);

    // The other session: its snapshot's xmin holds vacuum back until it ends. Named, so an
    // operator (or a test) can tell it in pg_stat_activity.
    let opts = PgConnectOptions::from_str(&cfg.database_url)?
        .application_name(&idle_session_name(std::process::id()));
    let mut other = PgConnection::connect_with(&opts).await?;
    sqlx::query("BEGIN").execute(&mut other).await?;
    sqlx::query("SELECT txid_current()")
        .execute(&mut other)
        .await?;
    let opened = Instant::now();
    let from = run.rows.len();
    let mut idle_ms = Vec::new();
    while opened.elapsed() < idle {
        idle_ms.extend(run.step("idle").await?);
    }
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "the idle transaction was ended before its time (idle_in_transaction_session_timeout?): {e}"
            ))
        })?;
    let closed = Instant::now();
    let _ = other.close().await;
    let idle_rows = &run.rows[from..];
    let (ran, offered) = idle_rows.iter().fold((0.0, 0.0), |(r, o), w| {
        (r + w.load.jobs_per_sec, o + w.load.offered_per_sec)
    });
    let ratio = if offered > 0.0 { ran / offered } else { 0.0 };
    idle_ms.sort_by(f64::total_cmp);
    let idle_p99 = percentile(&idle_ms, 0.99);

    while closed.elapsed() < recovery_limit {
        run.step("recovery").await?;
        let w = run.rows.last().expect("a window was just recorded");
        if base.recovered(w, rate) {
            return Ok((ratio, idle_p99, Some(closed.elapsed().as_secs_f64())));
        }
    }
    Ok((ratio, idle_p99, None))
}

/// The clean stretch's figures: the medians of its windows.
struct Baseline {
    backlog: f64,
    p99_ms: f64,
}

fn baseline(rows: &[IdleWindow]) -> Baseline {
    let median = |mut v: Vec<f64>| {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    Baseline {
        backlog: median(rows.iter().map(|r| r.backlog as f64).collect()),
        p99_ms: median(rows.iter().map(|r| r.load.pickup_p99_ms).collect()),
    }
}

impl Baseline {
    /// Back at baseline: the backlog and the pickup p99 within twice the clean stretch's,
    /// with a little slack (a tenth of a second of arrivals, 10 ms) for a quiet baseline.
    fn recovered(&self, w: &IdleWindow, rate: f64) -> bool {
        let backlog_ok = (w.backlog as f64) <= 2.0 * self.backlog.max(0.0) + rate * 0.1;
        let p99_ok = !self.p99_ms.is_finite()
            || (w.load.pickup_p99_ms.is_finite()
                && w.load.pickup_p99_ms <= 2.0 * self.p99_ms + 10.0);
        backlog_ok && p99_ok
    }
}

impl IdleWindow {
    pub fn render(&self) -> String {
        let (w, h) = (&self.load, &self.health);
        format!(
            "idle-tx {:<8} {:>6.0}s: {:>6.0} jobs/s (offered {:.0}), pickup p99 {:.1} ms, \
             backlog {}, dead tuples jobs {} intents {}, oldest transaction {:.1}s",
            self.phase,
            w.at_secs,
            w.jobs_per_sec,
            w.offered_per_sec,
            w.pickup_p99_ms,
            self.backlog,
            h.jobs_dead_tuples,
            h.intents_dead_tuples,
            h.oldest_xact_secs
        )
    }
}

impl IdleTx {
    pub fn render(&self, o: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            o,
            "idle transaction: {:.0} jobs/s offered, {:.0}s clean, {:.0}s idle in transaction",
            self.offered_jobs_per_sec, self.clean_secs, self.idle_secs
        );
        for r in &self.windows {
            let _ = writeln!(o, "  {}", r.render());
        }
        let _ = writeln!(
            o,
            "  while idle: {:.0}% of the offered load run, pickup p99 {:.1} ms: {}",
            self.idle_throughput_ratio * 100.0,
            self.idle_pickup_p99_ms,
            if self.kept_up {
                "kept up (≥ 90% and p99 < 1 s)"
            } else {
                "fell behind (< 90% or p99 ≥ 1 s)"
            }
        );
        let _ = match self.recovered_after_secs {
            Some(s) => writeln!(o, "  back to baseline {s:.0}s after the transaction ended"),
            None => writeln!(
                o,
                "  not back to baseline within {:.0}s of the transaction ending",
                self.recovery_limit_secs
            ),
        };
    }
}
