//! Process-wide counters for Prometheus: jobs finished by type and outcome, processing time,
//! in flight, reconciler work. Plain atomics and one short-held map lock per chunk; rendered
//! in the text exposition format by hand, so there is no registry to wire up.
//!
//! `/metrics` needs no token and anyone allowed to submit can invent job types, so the `type`
//! label takes values from a bounded set: the types the node knows (its registry, given to
//! [`Metrics::with_known_types`]), or, when no set is given, the first [`MAX_TYPE_LABELS`]
//! types seen. Every other type is counted under [`OTHER_TYPES`]; nothing goes uncounted.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the processing-time histogram, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

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

#[derive(Default)]
pub struct Metrics {
    /// Decides each type's label; the maps below never hold more keys than it allows (plus
    /// [`OTHER_TYPES`]).
    labels: Labels,
    /// (type, outcome) → jobs. Outcome is succeeded, failed or retrying.
    finished: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    /// type → processing time histogram.
    durations: Mutex<BTreeMap<String, Histogram>>,
    pub in_flight: AtomicI64,
    pub reconciled: AtomicU64,
    pub rescued: AtomicU64,
    pub pruned: AtomicU64,
    pub dropped_ids: AtomicU64,
    /// Lease-mode outcomes refused because the node had lost the lease (paused or cut off
    /// past it, and the job was rescued or cancelled meanwhile).
    pub lease_refused: AtomicU64,
}

impl Metrics {
    /// Metrics whose `type` labels are `types` (a node's registry) plus [`OTHER_TYPES`].
    pub fn with_known_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Metrics {
            labels: Labels::Known(types.into_iter().map(Into::into).collect()),
            ..Metrics::default()
        }
    }

    /// The label `job_type` is counted under, given the types already labelled.
    fn label<'a, V>(&self, job_type: &'a str, seen: &BTreeMap<String, V>) -> &'a str {
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

    /// Records a chunk's outcomes under one acquisition of each lock. A type already seen
    /// costs no allocation.
    pub fn record_many<'a>(&self, items: impl Iterator<Item = (&'a str, &'static str, Duration)>) {
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        for (job_type, outcome, took) in items {
            let job_type = self.label(job_type, &f);
            let per = match f.get_mut(job_type) {
                Some(p) => p,
                None => f.entry(job_type.to_string()).or_default(),
            };
            *per.entry(outcome).or_default() += 1;
            let h = match d.get_mut(job_type) {
                Some(h) => h,
                None => d.entry(job_type.to_string()).or_default(),
            };
            let secs = took.as_secs_f64();
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// Prometheus text format. `queue_depth` is asked of the queue by the caller.
    pub fn render(&self, queue_depth: Option<u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiplock_jobs_finished_total Job outcomes recorded by this node.\n");
        out.push_str("# TYPE skiplock_jobs_finished_total counter\n");
        for (t, per) in self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (o, n) in per {
                let _ = writeln!(
                    out,
                    "skiplock_jobs_finished_total{{type=\"{}\",outcome=\"{o}\"}} {n}",
                    escape(t)
                );
            }
        }
        out.push_str("# HELP skiplock_job_duration_seconds Processor run time.\n");
        out.push_str("# TYPE skiplock_job_duration_seconds histogram\n");
        for (t, h) in self
            .durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let t = escape(t);
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "skiplock_job_duration_seconds_bucket{{type=\"{t}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "skiplock_job_duration_seconds_bucket{{type=\"{t}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "skiplock_job_duration_seconds_sum{{type=\"{t}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "skiplock_job_duration_seconds_count{{type=\"{t}\"}} {}",
                h.count
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "skiplock_jobs_in_flight",
            "Jobs locked and running on this node.",
            "gauge",
            self.in_flight.load(Ordering::Relaxed).to_string(),
        );
        if let Some(d) = queue_depth {
            gauge(
                &mut out,
                "skiplock_queue_depth",
                "Job IDs waiting in the queue.",
                "gauge",
                d.to_string(),
            );
        }
        gauge(
            &mut out,
            "skiplock_reconciler_enqueued_total",
            "IDs the reconciler offered to the queue.",
            "counter",
            self.reconciled.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "skiplock_reconciler_rescued_total",
            "Jobs charged an attempt after their node died.",
            "counter",
            self.rescued.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "skiplock_pruned_total",
            "Finished jobs deleted past retention.",
            "counter",
            self.pruned.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "skiplock_dropped_ids_total",
            "Popped IDs that found no pending, due, unlocked row.",
            "counter",
            self.dropped_ids.load(Ordering::Relaxed).to_string(),
        );
        out
    }
}

/// Label values are job types (validated to a safe alphabet), but escape anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
            .contains("{type=\"(other)\",outcome=\"failed\"} 500"));
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
            .contains("{type=\"t0\",outcome=\"failed\"} 2"));
        assert!(m
            .render(None)
            .contains("{type=\"(other)\",outcome=\"failed\"} 50"));
    }
}
