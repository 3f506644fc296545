//! Logs: always on stderr (stdout carries the commands' output), as text or as one JSON
//! object per line (`--log-format`), filtered by `SKIPLOCK_LOG`, else `RUST_LOG`, else a
//! default chosen by the command.

use std::env::VarError;
use std::io::Write as _;

use anyhow::{anyhow, bail};
use tracing_subscriber::EnvFilter;

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

/// Installs the process's subscriber. A filter variable that does not parse is an error, not
/// a silent fall-back to the default: that would hide exactly what its author wanted to see.
pub fn init(format: LogFormat, default: &str) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default)?)
        .with_writer(std::io::stderr)
        // A failed write would be reported with `eprintln!` to the same stderr, which panics
        // when stderr is closed (`skiplock worker 2>&1 | head`); inside sqlx's SQLite thread
        // that panic hangs the command. A log line that cannot be written is dropped.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Flattened, so that collectors find `message` and the fields at the top level.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
    Ok(())
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
