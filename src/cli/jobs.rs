//! `skiplock jobs list|show|retry|cancel`.

use anyhow::Context;
use uuid::Uuid;

use super::Settings;
use crate::client::Client;
use crate::job::JobStatus;
use crate::store::JobFilter;

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// List jobs, oldest first.
    List {
        #[arg(long)]
        status: Option<JobStatus>,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long)]
        batch: Option<Uuid>,
        /// Start after this job ID (the last one of the previous page).
        #[arg(long)]
        after: Option<Uuid>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Show { id: Uuid },
    /// Put a failed or cancelled job back to pending, with fresh attempts.
    Retry { id: Uuid },
    /// Cancel a pending job that is not running right now.
    Cancel { id: Uuid },
}

pub async fn run(s: &Settings, c: JobsCommand) -> anyhow::Result<()> {
    let store = s.store(2, false).await?;
    match c {
        JobsCommand::List {
            status,
            job_type,
            batch,
            after,
            limit,
            json,
        } => {
            let jobs = store
                .list_jobs(&JobFilter {
                    status,
                    job_type,
                    batch_id: batch,
                    after,
                    limit,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                println!(
                    "{:<36}  {:<20} {:<10} {:>8}  LAST ERROR",
                    "ID", "TYPE", "STATUS", "ATTEMPTS"
                );
                for j in jobs {
                    println!(
                        "{:<36}  {:<20} {:<10} {:>4}/{:<3}  {}",
                        j.id,
                        j.job_type,
                        j.status,
                        j.attempts,
                        j.max_attempts,
                        j.last_error
                            .as_deref()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    );
                }
            }
        }
        JobsCommand::Show { id } => {
            let j = store
                .job(id)
                .await?
                .with_context(|| format!("job {id} not found"))?;
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
        JobsCommand::Retry { id } => {
            let j = store.retry(id).await?;
            // Queued now where the queue is shared (Redis); otherwise a worker's reconciler
            // finds the pending job within its interval.
            Client::new(store, s.queue().await?).notify(&[j.id]).await;
            println!("{} {}", j.id, j.status);
        }
        JobsCommand::Cancel { id } => {
            let j = store.cancel(id).await?;
            println!("{} {}", j.id, j.status);
        }
    }
    Ok(())
}
