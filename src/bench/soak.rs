//! Soak: does anything grow over time? The default settings' peak rate is measured first
//! (jobs committed by another connection, claimed from the database), then an external
//! producer offers half of it for the whole duration while a node runs in this process. Each
//! interval prints throughput, pickup latency, this process's memory, the size of `jobs` and
//! its indexes, dead tuples and the oldest open transaction; the end says, for each, whether
//! it stayed flat (within ±15% of the first interval) or by how much it grew.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::health::{self, TableHealth};
use super::load::{Load, Window};
use super::{BenchConfig, Line, Scratch};
use crate::config::ChunkSetting;
use crate::error::Result;
use crate::executor::ExecutorConfig;
use crate::queue::Queue;

/// A value within this fraction of the first interval's is "flat".
pub const FLAT: f64 = 0.15;

/// Where the memory figure comes from: the node runs inside the bench.
pub const RSS_OF: &str = "bench process (node in-process, producer included)";

#[derive(Debug, Clone, Serialize)]
pub struct SoakInterval {
    #[serde(flatten)]
    pub load: Window,
    pub rss_mib: Option<f64>,
    #[serde(flatten)]
    pub health: TableHealth,
}

/// Flat or not, for one figure: its first interval beside its last.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub figure: String,
    pub first: f64,
    pub last: f64,
    /// (last - first) / first; `None` when the first was 0.
    pub change: Option<f64>,
    pub flat: bool,
    /// What people read: "flat (+3%)" or "grew 41% (12.0 → 16.9)".
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub duration_secs: f64,
    pub interval_secs: f64,
    pub concurrency: usize,
    /// The default chunk setting (`auto:MAX`: adaptive, up to MAX).
    pub chunk: String,
    /// The default settings' rate with jobs from an external producer and a full table.
    pub peak_jobs_per_sec: f64,
    /// Half the peak: the load offered throughout.
    pub offered_jobs_per_sec: f64,
    pub rss_of: String,
    pub intervals: Vec<SoakInterval>,
    pub verdicts: Vec<Verdict>,
}

pub async fn measure(
    cfg: &BenchConfig,
    duration: Duration,
    interval: Duration,
    queue: Arc<dyn Queue>,
    peak_queue: Arc<dyn Queue>,
    line: &Line,
) -> Result<Soak> {
    let concurrency = ExecutorConfig::default().concurrency;
    let setting = ChunkSetting::default();
    let chunk = match setting {
        ChunkSetting::Auto { max } => format!("auto:{max}"),
        ChunkSetting::Fixed(n) => n.to_string(),
    };
    let peak = super::processing_rate(cfg, concurrency, setting, peak_queue, false).await?;
    let offered = peak / 2.0;
    line(&format!(
        "soak: peak {peak:.0} jobs/s at the defaults (c={concurrency} k={chunk}); \
         offering {offered:.0} jobs/s for {}s, reporting every {}s; memory is the {RSS_OF}",
        duration.as_secs(),
        interval.as_secs_f64()
    ));
    let s = Scratch::new(cfg, concurrency as u32 + 6).await?;
    let mut load = Load::start(cfg, &s, queue, offered).await?;
    let mut intervals = Vec::new();
    let run = async {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        while load.elapsed_secs() < duration.as_secs_f64() - interval.as_secs_f64() / 2.0 {
            tick.tick().await;
            let (w, _) = load.window()?;
            let row = SoakInterval {
                load: w,
                rss_mib: health::own_rss_mib(),
                health: health::read(load.store.pool(), &s.schema).await?,
            };
            line(&row.render());
            intervals.push(row);
        }
        Ok::<_, crate::error::Error>(())
    };
    let ran = run.await;
    let stopped = load.stop().await;
    // The scratch schema goes whatever happened; the first error is the one reported.
    let dropped = s.drop_schema().await;
    ran.and(stopped).and(dropped)?;
    let verdicts = verdicts(&intervals);
    Ok(Soak {
        duration_secs: duration.as_secs_f64(),
        interval_secs: interval.as_secs_f64(),
        concurrency,
        chunk,
        peak_jobs_per_sec: peak,
        offered_jobs_per_sec: offered,
        rss_of: RSS_OF.into(),
        intervals,
        verdicts,
    })
}

/// Reads one figure off an interval.
type Figure = fn(&SoakInterval) -> f64;

fn verdicts(rows: &[SoakInterval]) -> Vec<Verdict> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Vec::new();
    };
    // Each with the change too small to mean anything whatever its ratio: a transaction
    // 3 ms old against one 20 ms old is no trend.
    let figures: [(&str, Figure, f64); 9] = [
        ("throughput jobs/s", |r| r.load.jobs_per_sec, 0.0),
        ("pickup p50 ms", |r| r.load.pickup_p50_ms, 1.0),
        ("pickup p99 ms", |r| r.load.pickup_p99_ms, 1.0),
        ("rss MiB", |r| r.rss_mib.unwrap_or(f64::NAN), 1.0),
        ("jobs total MiB", |r| r.health.jobs_total_mib, 0.1),
        ("jobs indexes MiB", |r| r.health.jobs_indexes_mib, 0.1),
        (
            "jobs dead tuples",
            |r| r.health.jobs_dead_tuples as f64,
            0.0,
        ),
        (
            "intents dead tuples",
            |r| r.health.intents_dead_tuples as f64,
            0.0,
        ),
        ("oldest transaction s", |r| r.health.oldest_xact_secs, 1.0),
    ];
    figures
        .iter()
        .map(|(name, f, noise)| verdict(name, f(first), f(last), *noise))
        .collect()
}

/// Flat within ±[`FLAT`] of the first value, or when it moved by no more than `noise`
/// (in the figure's unit); a first value of 0 is flat only if it stays within `noise`.
pub fn verdict(figure: &str, first: f64, last: f64, noise: f64) -> Verdict {
    let change = (first != 0.0 && first.is_finite() && last.is_finite())
        .then(|| (last - first) / first.abs());
    let flat = (last - first).abs() <= noise
        || match change {
            Some(c) => c.abs() <= FLAT,
            None => first == last,
        };
    let text = match change {
        _ if first.is_nan() || last.is_nan() => "not measured".to_string(),
        Some(c) if flat => format!("flat ({:+.0}%, {first:.1} → {last:.1})", c * 100.0),
        Some(c) if c > 0.0 => format!("grew {:.0}% ({first:.1} → {last:.1})", c * 100.0),
        Some(c) => format!("fell {:.0}% ({first:.1} → {last:.1})", -c * 100.0),
        None if flat => format!("flat ({first:.1} → {last:.1})"),
        None => format!("grew from 0 to {last:.1}"),
    };
    Verdict {
        figure: figure.to_string(),
        first,
        last,
        change,
        flat,
        text,
    }
}

impl SoakInterval {
    /// One line per interval, as it happens.
    pub fn render(&self) -> String {
        let (w, h) = (&self.load, &self.health);
        format!(
            "soak {:>7.0}s: {:>7.0} jobs/s (offered {:.0}), pickup p50 {:.1} ms p99 {:.1} ms, \
             rss {}, jobs {:.1} MiB (indexes {:.1} MiB), dead tuples jobs {} intents {}, \
             oldest transaction {:.1}s",
            w.at_secs,
            w.jobs_per_sec,
            w.offered_per_sec,
            w.pickup_p50_ms,
            w.pickup_p99_ms,
            self.rss_mib
                .map_or("n/a".to_string(), |m| format!("{m:.1} MiB")),
            h.jobs_total_mib,
            h.jobs_indexes_mib,
            h.jobs_dead_tuples,
            h.intents_dead_tuples,
            h.oldest_xact_secs
        )
    }
}

impl Soak {
    pub fn render(&self, o: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            o,
            "soak: {:.0}s at {:.0} jobs/s offered (half the defaults' peak of {:.0}, c={} k={}), \
             memory of the {}",
            self.duration_secs,
            self.offered_jobs_per_sec,
            self.peak_jobs_per_sec,
            self.concurrency,
            self.chunk,
            self.rss_of
        );
        for r in &self.intervals {
            let _ = writeln!(o, "  {}", r.render());
        }
        for v in &self.verdicts {
            let _ = writeln!(o, "  {:<22} {}", v.figure, v.text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn flat_within_fifteen_percent_or_the_noise() {
        assert!(verdict("x", 100.0, 114.0, 0.0).flat);
        assert!(verdict("x", 100.0, 86.0, 0.0).flat);
        let v = verdict("x", 100.0, 141.0, 0.0);
        assert!(!v.flat);
        assert!(v.text.starts_with("grew 41%"), "{}", v.text);
        assert!(verdict("x", 100.0, 50.0, 0.0).text.starts_with("fell 50%"));
        // 3 ms to 20 ms is +567%, but within a second of noise.
        assert!(verdict("x", 0.003, 0.02, 1.0).flat);
        assert!(verdict("x", 0.0, 0.0, 0.0).flat);
        let v = verdict("x", 0.0, 2000.0, 0.0);
        assert!(!v.flat && v.text == "grew from 0 to 2000.0", "{}", v.text);
        assert_eq!(verdict("x", f64::NAN, 1.0, 0.0).text, "not measured");
    }
}
