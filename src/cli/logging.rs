//! Logs: always on stderr (stdout carries the commands' output), as text or as one JSON
//! object per line (`--log-format`), filtered by `SKIPLOCK_LOG`, else `RUST_LOG`, else a
//! default chosen by the command.
//!
//! Traces (feature `otel`): when the `OTEL_*` variables ask for them, the job attempt spans
//! also go to an OTLP exporter, through a filter of their own, so the log level neither
//! hides them nor lets other spans through.

use std::env::VarError;
use std::io::Write as _;

use anyhow::{anyhow, bail};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the event's
    /// fields), for log collectors.
    Json,
}

/// The variables that set the filter, the first one set wins: `SKIPLOCK_LOG` is skiplock's
/// own, so it overrides a `RUST_LOG` exported for every Rust program on the machine.
pub const FILTER_VARIABLES: [&str; 2] = ["SKIPLOCK_LOG", "RUST_LOG"];

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber. A filter variable that does not parse is an error, not
/// a silent fall-back to the default: that would hide exactly what its author wanted to see.
/// The returned [`Telemetry`] sends what the trace exporter still holds when shut down.
pub fn init(format: LogFormat, default: &str) -> anyhow::Result<Telemetry> {
    let builder = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A failed write would be reported with `eprintln!` to the same stderr, which panics
        // when stderr is closed (`skiplock worker 2>&1 | head`); inside sqlx's SQLite thread
        // that panic hangs the command. A log line that cannot be written is dropped.
        .log_internal_errors(false);
    let logs: BoxedLayer = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // Flattened, so that collectors find `message` and the fields at the top level.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).boxed(),
    };
    let (traces, telemetry) = traces()?;
    let mut layers = vec![logs.with_filter(filter(default)?).boxed()];
    layers.extend(traces);
    tracing_subscriber::registry().with(layers).init();
    Ok(telemetry)
}

/// The trace exporter's side of the subscriber, when the environment asks for one.
#[cfg(feature = "otel")]
fn traces() -> anyhow::Result<(Option<BoxedLayer>, Telemetry)> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::filter::Targets;

    let Some(provider) = crate::otel::provider_from_env()? else {
        return Ok((None, Telemetry { provider: None }));
    };
    let tracer = provider.tracer("skiplock");
    let only_attempts =
        Targets::new().with_target(crate::otel::ATTEMPT_TARGET, tracing::Level::DEBUG);
    // The spans say what ran; where in skiplock's source, on which thread and how long each
    // was idle says nothing to whoever reads the trace.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(only_attempts)
        .boxed();
    Ok((
        Some(layer),
        Telemetry {
            provider: Some(provider),
        },
    ))
}

#[cfg(not(feature = "otel"))]
fn traces() -> anyhow::Result<(Option<BoxedLayer>, Telemetry)> {
    Ok((None, Telemetry {}))
}

/// What must outlive the command: the trace exporter, which holds spans until it sends them.
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still held and stops the exporter (a no-op without one). It waits on
    /// the exporter's thread, so it runs off the async runtime's threads.
    pub async fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "could not send the last spans");
            }
        }
    }
}

fn filter(default: &str) -> anyhow::Result<EnvFilter> {
    for var in FILTER_VARIABLES {
        match std::env::var(var) {
            // An empty variable means unset, as an empty URL does.
            Ok(v) if v.trim().is_empty() => {}
            Ok(v) => {
                return EnvFilter::builder().parse(&v).map_err(|e| {
                    anyhow!("{var}={v:?} is not a log filter ({e}); try e.g. `info,sqlx=warn`")
                })
            }
            Err(VarError::NotPresent) => {}
            Err(VarError::NotUnicode(_)) => bail!("{var} is not valid UTF-8"),
        }
    }
    Ok(EnvFilter::new(default))
}

/// The error a command ended with, on stderr in the log format, so that a collector reading
/// JSON lines gets the reason too.
pub fn print_error(format: LogFormat, e: &anyhow::Error) {
    let message = format!("{e:#}");
    // Not `eprintln!`, which panics when stderr is closed; the exit code still says it.
    let mut err = std::io::stderr();
    let _ = match format {
        LogFormat::Text => writeln!(err, "error: {message}"),
        LogFormat::Json => writeln!(
            err,
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "target": "skiplock",
                "message": message,
            })
        ),
    };
}
