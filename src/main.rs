//! The `skiplock` binary: parse, set up logs, run, map errors to one line and an exit code.

use clap::Parser;
use skiplock::cli::logging;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = skiplock::cli::Cli::parse();
    let format = cli.global.log_format;
    // Commands that draw their own output (progress bars, tables) log only warnings.
    let default = if cli.command.is_quiet() {
        "warn"
    } else {
        "info,sqlx=warn"
    };
    if let Err(e) = logging::init(format, default) {
        logging::print_error(format, &e);
        return std::process::ExitCode::FAILURE;
    }
    match skiplock::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            logging::print_error(format, &e);
            std::process::ExitCode::FAILURE
        }
    }
}
