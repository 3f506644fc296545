//! `/metrics` as Prometheus reads it: the page is checked by Prometheus's own `promtool check
//! metrics` (parser and linter), and its series keep the names and labels dashboards and
//! alerts were written against.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use skiplock::metrics::{Metrics, OTHER_TYPES};

/// A page with every kind of series: outcomes of known and unknown types, durations across
/// the buckets, and each plain counter and gauge non-zero.
fn busy(queue_depth: Option<u64>) -> String {
    let m = Metrics::with_known_types(["noop", "resize.v2", "mail-out"]);
    let items = [
        ("noop", "succeeded", 0.0002),
        ("noop", "succeeded", 0.3),
        ("resize.v2", "retrying", 2.0),
        ("resize.v2", "failed", 45.0),
        ("mail-out", "succeeded", 0.01),
        ("made_up", "failed", 0.001),
        ("also_made_up", "failed", 0.001),
    ];
    m.record_many(
        items
            .iter()
            .map(|(t, o, s)| (*t, *o, Duration::from_secs_f64(*s))),
    );
    m.in_flight.store(3, Ordering::Relaxed);
    m.reconciled.store(10, Ordering::Relaxed);
    m.rescued.store(1, Ordering::Relaxed);
    m.pruned.store(7, Ordering::Relaxed);
    m.dropped_ids.store(2, Ordering::Relaxed);
    m.render(queue_depth)
}

/// `promtool check metrics` on `page`: its exit status and what it said.
fn promtool(page: &str) -> (bool, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!("promtool is needed ({e}); scripts/test installs it (Debian package prometheus)")
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn promtool_accepts_the_page_without_a_lint_warning() {
    for page in [
        busy(Some(42)),
        busy(None),
        Metrics::default().render(Some(0)),
    ] {
        let (ok, said) = promtool(&page);
        assert!(ok && said.trim().is_empty(), "promtool: {said}\n{page}");
    }
    // The checker is real: a page with a typeless, helpless sample is refused.
    let (ok, said) = promtool("skiplock_jobs_finished_total{type=\"x\"} 1\n");
    assert!(!ok, "promtool accepted a bad page: {said}");
}

#[test]
fn series_keep_their_names_and_labels() {
    let page = busy(Some(42));
    let series: BTreeSet<String> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let name = l.split(['{', ' ']).next().unwrap();
            let labels: Vec<&str> = l
                .split_once('{')
                .map(|(_, rest)| rest.split('}').next().unwrap())
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split('=').next())
                .filter(|k| !k.is_empty())
                .collect();
            format!("{name}{{{}}}", labels.join(","))
        })
        .collect();
    let expected: BTreeSet<String> = [
        "skiplock_jobs_finished_total{outcome,type}",
        "skiplock_job_duration_seconds_bucket{le,type}",
        "skiplock_job_duration_seconds_sum{type}",
        "skiplock_job_duration_seconds_count{type}",
        "skiplock_jobs_in_flight{}",
        "skiplock_queue_depth{}",
        "skiplock_reconciler_enqueued_total{}",
        "skiplock_reconciler_rescued_total{}",
        "skiplock_pruned_total{}",
        "skiplock_dropped_ids_total{}",
        "skiplock_lease_outcomes_refused_total{}",
    ]
    .map(|s| {
        // Label names as sorted in a sample line may differ from this list's order.
        let (name, labels) = s.split_once('{').unwrap();
        let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
        labels.retain(|l| !l.is_empty());
        labels.sort();
        format!("{name}{{{}}}", labels.join(","))
    })
    .into_iter()
    .collect();
    let series: BTreeSet<String> = series
        .into_iter()
        .map(|s| {
            let (name, labels) = s.split_once('{').unwrap();
            let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            labels.retain(|l| !l.is_empty());
            labels.sort();
            format!("{name}{{{}}}", labels.join(","))
        })
        .collect();
    assert_eq!(series, expected, "{page}");

    // The values a user reads: outcomes per type, unknown types folded together, every
    // bucket, and the queue depth only when it is known.
    for line in [
        "skiplock_jobs_finished_total{outcome=\"succeeded\",type=\"noop\"} 2",
        &format!("skiplock_jobs_finished_total{{outcome=\"failed\",type=\"{OTHER_TYPES}\"}} 2"),
        "skiplock_job_duration_seconds_bucket{type=\"noop\",le=\"0.0005\"} 1",
        "skiplock_job_duration_seconds_bucket{type=\"resize.v2\",le=\"30\"} 1",
        "skiplock_job_duration_seconds_bucket{type=\"resize.v2\",le=\"+Inf\"} 2",
        "skiplock_job_duration_seconds_count{type=\"noop\"} 2",
        "skiplock_jobs_in_flight 3",
        "skiplock_queue_depth 42",
        "skiplock_reconciler_enqueued_total 10",
        "skiplock_dropped_ids_total 2",
    ] {
        assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
    }
    assert!(!busy(None).contains("skiplock_queue_depth"));
}
