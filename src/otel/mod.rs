//! Tracing each job attempt, and carrying a submit's trace to the attempts that run it.
//!
//! Every attempt runs inside a `job` span (target `skiplock::attempt`, level DEBUG, so that
//! plain logs at `info` pay nothing for it) with the job's id, type and attempt number, and
//! its outcome once decided. A job keeps the W3C `traceparent` of the trace its submit was
//! made in (the `traceparent` column): with the `otel` feature, the insert paths take it from
//! the current span when the job names none, and each attempt's span continues that trace.
//! Without the feature the spans are plain `tracing` spans and a job keeps only a
//! `traceparent` given to it explicitly (the API's `traceparent` header, for one).
//!
//! [`provider_from_env`] (feature `otel`) is the OTLP exporter the binary installs, set up by
//! the standard `OTEL_*` variables.

#[cfg(feature = "otel")]
mod export;

use std::borrow::Cow;

use tracing::field::Empty;
use tracing::Span;

#[cfg(feature = "otel")]
pub use export::{provider_from_env, wanted};

use crate::job::{Job, NewJob};
use crate::store::Outcome;

/// The `tracing` target of the attempt spans: what a subscriber enables to see them.
pub const ATTEMPT_TARGET: &str = "skiplock::attempt";

/// The span of one attempt at `job`, continuing its stored trace. `job.outcome` is recorded
/// by [`record`] once the attempt's outcome is decided.
pub(crate) fn attempt_span(job: &Job) -> Span {
    let span = tracing::debug_span!(
        target: ATTEMPT_TARGET,
        "job",
        otel.name = %format_args!("job {}", job.job_type),
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        job.id = %job.id,
        "job.type" = %job.job_type,
        job.attempt = job.attempts + 1,
        job.outcome = Empty,
    );
    // A span nobody records (the common case: no trace exporter) costs nothing more.
    if let (false, Some(tp)) = (span.is_disabled(), &job.traceparent) {
        continue_trace(&span, tp);
    }
    span
}

/// Records what the attempt came to: `succeeded`, `retry` or `failed` (an error status with
/// the error's text for the last two).
pub(crate) fn record(span: &Span, outcome: &Outcome) {
    let name = match outcome {
        Outcome::Succeeded { .. } | Outcome::SucceededDeleted { .. } => "succeeded",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
    };
    span.record("job.outcome", name);
    match outcome.error() {
        None => span.record("otel.status_code", "OK"),
        // An error status with this text as its message.
        Some(e) => span.record("otel.status_description", e),
    };
}

/// Records an attempt that ended without an outcome of its own: `stopped` (its lease-mode
/// job was cancelled or rescued while it ran) or `lease_lost` (its outcome was refused).
pub(crate) fn record_unsettled(span: &Span, what: &'static str) {
    span.record("job.outcome", what);
}

/// The jobs as they are to be stored: those that name no trace take the current span's,
/// when there is one (feature `otel`). Borrowed, with no copy, when nothing changes.
pub(crate) fn in_current_trace(jobs: &[NewJob]) -> Cow<'_, [NewJob]> {
    if jobs.iter().all(|j| j.traceparent.is_some()) {
        return Cow::Borrowed(jobs);
    }
    match current_traceparent() {
        None => Cow::Borrowed(jobs),
        Some(tp) => Cow::Owned(
            jobs.iter()
                .map(|j| NewJob {
                    traceparent: j.traceparent.clone().or_else(|| Some(tp.clone())),
                    ..j.clone()
                })
                .collect(),
        ),
    }
}

/// The current span's trace as a W3C `traceparent`, if it belongs to one that is being
/// recorded by OpenTelemetry.
#[cfg(feature = "otel")]
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Without the `otel` feature no span belongs to an OpenTelemetry trace.
#[cfg(not(feature = "otel"))]
pub fn current_traceparent() -> Option<String> {
    None
}

/// Makes `span` a child of the span `traceparent` names. A value the propagator cannot read
/// leaves the span a root (the stores keep only valid ones).
#[cfg(feature = "otel")]
fn continue_trace(span: &Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let carrier =
        std::collections::HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Fails only when no OpenTelemetry layer records the span: then there is no trace to join.
    let _ = span.set_parent(parent);
}

#[cfg(not(feature = "otel"))]
fn continue_trace(_span: &Span, _traceparent: &str) {}
