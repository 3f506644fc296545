//! Process-wide counters for Prometheus: jobs finished by type and outcome, processing time,
//! in flight, reconciler work. The labelled series are `prometheus` counters and histograms,
//! encoded in the text format `/metrics` declares (`text/plain; version=0.0.4`); the plain
//! counters stay atomics that other modules bump directly, read when the page is rendered.
//!
//! `/metrics` needs no token and anyone allowed to submit can invent job types, so the `type`
//! label takes values from a bounded set: the types the node knows (its registry, given to
//! [`Metrics::with_known_types`]), or, when no set is given, the first [`MAX_TYPE_LABELS`]
//! types seen. Every other type is counted under [`OTHER_TYPES`]; nothing goes uncounted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec};
use prometheus::{IntGauge, Opts, TextEncoder};

/// Upper bounds of the processing-time histogram, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The `type` label of jobs whose type gets no label of its own. Job types cannot contain
/// parentheses, so this can never be mistaken for (or merged with) a real type.
pub const OTHER_TYPES: &str = "(other)";

/// Distinct `type` labels a [`Metrics::default`] keeps before folding new types into
/// [`OTHER_TYPES`]. A type costs about 1.5 KB of `/metrics` (its histogram and outcomes), so
/// this bounds the page near 150 KB.
pub const MAX_TYPE_LABELS: usize = 100;

/// Which job types get a `type` label of their own.
#[derive(Debug, Default)]
enum Labels {
    /// No registry given: the first [`MAX_TYPE_LABELS`] types seen.
    #[default]
    FirstSeen,
    /// The types the node has processors for; a job of any other type can only fail with
    /// "no processor", and those failures are counted together.
    Known(HashSet<String>),
}

/// One `type` label's series, looked up once: recording then touches only atomics.
struct Series {
    /// outcome (succeeded, failed or retrying) → jobs.
    outcomes: HashMap<&'static str, IntCounter>,
    duration: Histogram,
}

pub struct Metrics {
    /// Decides each type's label; `series` never holds more keys than it allows (plus
    /// [`OTHER_TYPES`]), and neither do the vectors below.
    labels: Labels,
    /// type label → its series. Held once per chunk by [`Metrics::record_many`].
    series: Mutex<HashMap<String, Series>>,
    /// (type, outcome) → jobs.
    finished: IntCounterVec,
    /// type → processing time.
    durations: HistogramVec,
    pub in_flight: AtomicI64,
    pub reconciled: AtomicU64,
    pub rescued: AtomicU64,
    pub pruned: AtomicU64,
    pub dropped_ids: AtomicU64,
    /// Lease-mode outcomes refused because the node had lost the lease (paused or cut off
    /// past it, and the job was rescued or cancelled meanwhile).
    pub lease_refused: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Labels::FirstSeen)
    }
}

impl Metrics {
    /// Metrics whose `type` labels are `types` (a node's registry) plus [`OTHER_TYPES`].
    pub fn with_known_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Metrics::new(Labels::Known(types.into_iter().map(Into::into).collect()))
    }

    fn new(labels: Labels) -> Self {
        // The names, labels and buckets are constants: only a typo here could fail.
        let finished = IntCounterVec::new(
            Opts::new(
                "skiplock_jobs_finished_total",
                "Job outcomes recorded by this node.",
            ),
            &["type", "outcome"],
        )
        .expect("valid counter");
        let durations = HistogramVec::new(
            HistogramOpts::new("skiplock_job_duration_seconds", "Processor run time.")
                .buckets(BUCKETS.to_vec()),
            &["type"],
        )
        .expect("valid histogram");
        Metrics {
            labels,
            series: Mutex::default(),
            finished,
            durations,
            in_flight: AtomicI64::default(),
            reconciled: AtomicU64::default(),
            rescued: AtomicU64::default(),
            pruned: AtomicU64::default(),
            dropped_ids: AtomicU64::default(),
            lease_refused: AtomicU64::default(),
        }
    }

    /// The label `job_type` is counted under, given the types already labelled.
    fn label<'a, V>(&self, job_type: &'a str, seen: &HashMap<String, V>) -> &'a str {
        let own = match &self.labels {
            Labels::Known(known) => known.contains(job_type),
            Labels::FirstSeen => {
                let labelled = seen.len() - usize::from(seen.contains_key(OTHER_TYPES));
                seen.contains_key(job_type) || labelled < MAX_TYPE_LABELS
            }
        };
        if own {
            job_type
        } else {
            OTHER_TYPES
        }
    }

    /// Records a chunk's outcomes under one acquisition of the lock. A type and outcome
    /// already seen cost no allocation.
    pub fn record_many<'a>(&self, items: impl Iterator<Item = (&'a str, &'static str, Duration)>) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (job_type, outcome, took) in items {
            let label = self.label(job_type, &series);
            let s = match series.get_mut(label) {
                Some(s) => s,
                None => series.entry(label.to_string()).or_insert_with(|| Series {
                    outcomes: HashMap::new(),
                    duration: self.durations.with_label_values(&[label]),
                }),
            };
            s.outcomes
                .entry(outcome)
                .or_insert_with(|| self.finished.with_label_values(&[label, outcome]))
                .inc();
            s.duration.observe(took.as_secs_f64());
        }
    }

    /// Prometheus text format. `queue_depth` is asked of the queue by the caller; unknown
    /// (the queue unreachable), the series is left out rather than shown stale.
    pub fn render(&self, queue_depth: Option<u64>) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut families = self.finished.collect();
        families.extend(self.durations.collect());
        families.push(gauge(
            "skiplock_jobs_in_flight",
            "Jobs locked and running on this node.",
            self.in_flight.load(Ordering::Relaxed),
        ));
        if let Some(d) = queue_depth {
            let d = i64::try_from(d).unwrap_or(i64::MAX);
            families.push(gauge(
                "skiplock_queue_depth",
                "Job IDs waiting in the queue.",
                d,
            ));
        }
        for (name, help, value) in [
            (
                "skiplock_reconciler_enqueued_total",
                "IDs the reconciler offered to the queue.",
                load(&self.reconciled),
            ),
            (
                "skiplock_reconciler_rescued_total",
                "Jobs charged an attempt after their node died.",
                load(&self.rescued),
            ),
            (
                "skiplock_pruned_total",
                "Finished jobs deleted past retention.",
                load(&self.pruned),
            ),
            (
                "skiplock_dropped_ids_total",
                "Popped IDs that found no pending, due, unlocked row.",
                load(&self.dropped_ids),
            ),
            (
                "skiplock_lease_outcomes_refused_total",
                "Lease-mode outcomes refused because the node had lost the job's lease.",
                load(&self.lease_refused),
            ),
        ] {
            families.push(counter(name, help, value));
        }
        // A labelled family with no series yet (no job finished) has nothing to say, and
        // the encoder refuses it.
        families.retain(|f| !f.get_metric().is_empty());
        let mut out = String::new();
        // Only a malformed family fails to encode, and every family here is built above.
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// A gauge family holding `value`, made at render time from an atomic.
fn gauge(name: &str, help: &str, value: i64) -> MetricFamily {
    let g = IntGauge::new(name, help).expect("valid gauge");
    g.set(value);
    only(g.collect())
}

/// A counter family holding `value`, made at render time from an atomic.
fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    let c = IntCounter::new(name, help).expect("valid counter");
    c.inc_by(value);
    only(c.collect())
}

fn only(mut families: Vec<MetricFamily>) -> MetricFamily {
    families.pop().expect("a metric collects one family")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(m: &Metrics, types: &[String]) {
        m.record_many(
            types
                .iter()
                .map(|t| (t.as_str(), "failed", Duration::from_millis(1))),
        );
    }

    fn type_labels(m: &Metrics) -> HashSet<String> {
        m.render(None)
            .split("type=\"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn unknown_types_share_one_label() {
        let m = Metrics::with_known_types(["noop", "resize"]);
        let mut types: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        types.push("noop".into());
        record(&m, &types);
        let labels = type_labels(&m);
        assert_eq!(labels, HashSet::from(["noop".into(), OTHER_TYPES.into()]));
        assert!(m
            .render(None)
            .contains("{outcome=\"failed\",type=\"(other)\"} 500"));
    }

    #[test]
    fn the_default_keeps_the_first_types_then_folds() {
        let m = Metrics::default();
        let types: Vec<String> = (0..MAX_TYPE_LABELS + 50).map(|i| format!("t{i}")).collect();
        record(&m, &types);
        record(&m, &types[..1]);
        let labels = type_labels(&m);
        assert_eq!(labels.len(), MAX_TYPE_LABELS + 1, "{labels:?}");
        assert!(labels.contains("t0") && labels.contains(OTHER_TYPES));
        assert!(m
            .render(None)
            .contains("{outcome=\"failed\",type=\"t0\"} 2"));
        assert!(m
            .render(None)
            .contains("{outcome=\"failed\",type=\"(other)\"} 50"));
    }
}
