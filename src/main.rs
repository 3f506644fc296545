//! The `skiplock` binary: parse, set up logs, run, map errors to one line and an exit code.
//!
//! - `cli`: the subcommands, on top of the library's public API.
//! - `bench`: `skiplock bench`, the measurements behind the README's numbers.

mod bench;
mod cli;

// `cli` and `bench` name the library's modules as `crate::…`, as they did when they lived in
// the library: they see only its public API.
use skiplock::{
    api, client, config, error, events, executor, job, maintenance, metrics, node, otel, processor,
    queue, store, NewJob,
};

use clap::Parser;
use cli::logging;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let format = cli.global.log_format;
    // Commands that draw their own output (progress bars, tables) log only warnings.
    let default = if cli.command.is_quiet() {
        "warn"
    } else {
        "info,sqlx=warn"
    };
    let telemetry = match logging::init(format, default) {
        Ok(t) => t,
        Err(e) => {
            logging::print_error(format, &e);
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = cli::run(cli).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            logging::print_error(format, &e);
            std::process::ExitCode::FAILURE
        }
    }
}
