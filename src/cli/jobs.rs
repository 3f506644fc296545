//! `skiplock jobs list|show|retry|cancel`: retry and cancel take one ID or filters.

use std::collections::HashSet;

use anyhow::Context;
use uuid::Uuid;

use super::Settings;
use crate::client::Client;
use crate::job::JobStatus;
use crate::store::{JobFilter, Selection, MAX_BULK};

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
    /// Show one job, with its attempt history (the last 20 failed attempts).
    Show { id: Uuid },
    /// Put failed or cancelled jobs back to pending, with fresh attempts: one by ID, or every
    /// one the filters match (`--batch ID --status failed`).
    Retry(Which),
    /// Cancel pending jobs that are not running right now: one by ID, or every one the
    /// filters match (`--batch ID`). Running jobs are left to finish.
    Cancel(Which),
}

/// One job by ID, or every job the filters match (at least one filter).
#[derive(Debug, clap::Args)]
pub struct Which {
    /// The job's ID.
    #[arg(
        conflicts_with_all = ["status", "job_type", "batch"],
        required_unless_present_any = ["status", "job_type", "batch"]
    )]
    pub id: Option<Uuid>,
    /// Only jobs with this status (retry: failed or cancelled; cancel: pending).
    #[arg(long)]
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    #[arg(long = "type")]
    pub job_type: Option<String>,
    /// Only jobs of this batch.
    #[arg(long)]
    pub batch: Option<Uuid>,
}

impl Which {
    fn selection(&self) -> Selection {
        Selection {
            status: self.status,
            job_type: self.job_type.clone(),
            batch_id: self.batch,
        }
    }
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
                .job_detail(id)
                .await?
                .with_context(|| format!("job {id} not found"))?;
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
        JobsCommand::Retry(w) => {
            // Queued now where the queue is shared (Redis); otherwise a worker's reconciler
            // finds the pending jobs within its interval.
            let client = Client::new(store.clone(), s.queue().await?);
            if let Some(id) = w.id {
                let j = store.retry(id).await?;
                client.notify(&[j.id]).await;
                println!("{} {}", j.id, j.status);
            } else {
                let n = retry_all(&client, &w.selection()).await?;
                println!("retried {n} jobs");
            }
        }
        JobsCommand::Cancel(w) => {
            if let Some(id) = w.id {
                let j = store.cancel(id).await?;
                println!("{} {}", j.id, j.status);
            } else {
                let sel = w.selection();
                let mut total = 0;
                // Cancelled jobs never match again, so this ends; each page is one bounded
                // transaction.
                loop {
                    let n = store.cancel_matching(&sel, MAX_BULK).await?;
                    total += n;
                    if n < MAX_BULK as u64 {
                        break;
                    }
                }
                println!("cancelled {total} jobs");
            }
        }
    }
    Ok(())
}

/// Retries every match, a bounded transaction per page, queueing each page once it commits.
/// A retried job can fail again and match again while this runs; seeing one twice ends the
/// run, so it never chases jobs that keep failing.
async fn retry_all(client: &Client, sel: &Selection) -> anyhow::Result<u64> {
    let mut seen = HashSet::new();
    loop {
        let due = client.store().retry_matching(sel, MAX_BULK).await?;
        client.notify_due(&due).await;
        let full = due.len() as i64 == MAX_BULK;
        let mut again = false;
        for d in &due {
            again |= !seen.insert(d.id);
        }
        if again {
            eprintln!("some jobs failed again while retrying; run the command again for the rest");
        }
        if !full || again {
            return Ok(seen.len() as u64);
        }
    }
}
