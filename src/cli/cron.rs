//! `skiplock cron list [--json]`: the config file's `[cron.NAME]` entries with the last tick
//! claimed (by any node) and the next one.

use super::Settings;
use crate::maintenance::cron::statuses;

#[derive(Debug, clap::Subcommand)]
pub enum CronCommand {
    /// Each entry's schedule, zone, job, catch-up policy, last and next run.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(s: &Settings, c: CronCommand) -> anyhow::Result<()> {
    let CronCommand::List { json } = c;
    // The entries as `worker` reads them: a bad one is refused here with the same message.
    let entries = s.file.cron_entries(&s.registry()?)?;
    let store = s.store(2, false).await?;
    let list = statuses(store.as_ref(), &entries, chrono::Utc::now()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no cron entries (declare [cron.NAME] tables in the config file)");
        return Ok(());
    }
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
    };
    println!(
        "{:<20} {:<16} {:<18} {:<16} {:<6} {:<24} {:<24}",
        "NAME", "SCHEDULE", "TIMEZONE", "TYPE", "CATCH", "LAST", "NEXT"
    );
    for e in list {
        let catch = serde_json::to_value(e.catch_up)?;
        println!(
            "{:<20} {:<16} {:<18} {:<16} {:<6} {:<24} {:<24}",
            e.name,
            e.schedule,
            e.timezone,
            e.job_type,
            catch.as_str().unwrap_or("?"),
            fmt(e.last_tick),
            fmt(e.next_tick)
        );
    }
    Ok(())
}
