//! `skiplock submit TYPE --target JSON… | --file targets.jsonl [--batch NAME] [--wait]`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use super::Settings;
use crate::client::Client;
use crate::error::Error;
use crate::job::{validate_target, NewJob, MAX_TARGET_BYTES};
use crate::queue::memory::MemoryQueue;
use crate::store::BatchOptions;

/// Most targets one `submit` takes: a bigger load belongs in several batches.
pub const MAX_TARGETS: usize = 5_000_000;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job type (a processor must be registered for it on the workers).
    pub job_type: String,
    /// A JSON target; repeat for several jobs.
    #[arg(long = "target", conflicts_with = "file")]
    pub targets: Vec<String>,
    /// A file with one JSON target per line (JSON Lines); `-` reads standard input.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Name the batch (a file always makes a batch).
    #[arg(long)]
    pub batch: Option<String>,
    /// Attempts before a job ends failed [default: the type's, or 3]
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i16,
    /// Run at this time (RFC 3339), not now.
    #[arg(long)]
    pub run_at: Option<DateTime<Utc>>,
    /// The named queue [default: the type's (`queue` in its [types.X] table), or `default`]
    #[arg(long)]
    pub queue: Option<String>,
    /// At most one open job of this type with this key: if one exists (pending or running),
    /// nothing is inserted and its id is printed. One --target only.
    #[arg(long, conflicts_with_all = ["file", "batch", "wait"])]
    pub unique_key: Option<String>,
    /// With --unique-key, also a duplicate of a job with that key created within this long
    /// (90s, 15m, 1h, 7d), finished or not.
    #[arg(long, requires = "unique_key")]
    pub unique_for: Option<String>,
    /// Submit as a batch and draw its progress until every job finished; exit non-zero if
    /// any failed.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(s: &Settings, a: SubmitArgs) -> anyhow::Result<()> {
    crate::job::validate_type(&a.job_type).map_err(anyhow::Error::msg)?;
    if let Some(q) = &a.queue {
        crate::job::validate_queue(q).map_err(|e| anyhow::anyhow!("--queue: {e}"))?;
    }
    let targets = match &a.file {
        Some(p) => read_targets(p)?,
        None if a.targets.is_empty() => bail!("give at least one --target JSON or a --file"),
        None => a
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| parse_target(t).with_context(|| format!("--target #{}", i + 1)))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    if let Some(k) = &a.unique_key {
        crate::job::validate_unique_key(k).map_err(|e| anyhow::anyhow!("--unique-key: {e}"))?;
        if targets.len() != 1 {
            bail!("--unique-key names one job: give exactly one --target");
        }
    }
    let unique_for = match &a.unique_for {
        Some(v) => Some(crate::config::parse_window(v).map_err(|e| anyhow::anyhow!("--{e}"))?),
        None => None,
    };
    // A broken `[types]` entry is refused here as `worker` refuses it; its policy (the
    // type's max_attempts) is published for the insert to apply to jobs that do not say.
    let policy = s.registry()?.policy();
    let store = s.store(4, true).await?;
    let queue = match s.queue().await {
        Ok(q) => q,
        // The database is the truth: with Redis down the jobs are still stored, and the
        // workers' reconciler queues them once Redis is back. Only a bad URL is fatal.
        Err(e) if s.redis_url.is_some() && !is_config_error(&e) => {
            eprintln!("warning: {e:#}; submitting anyway: the workers will queue these jobs");
            Arc::new(MemoryQueue::default())
        }
        Err(e) => return Err(e),
    };
    store.publish_policy(&policy).await?;
    let client = Client::new(store, queue);
    if a.file.is_some() || a.batch.is_some() || a.wait {
        let n = targets.len();
        let sub = client
            .submit_batch(
                &a.job_type,
                targets,
                BatchOptions {
                    name: a.batch.clone(),
                    max_attempts: a.max_attempts,
                    priority: a.priority,
                    run_at: a.run_at,
                    queue: a.queue.clone(),
                    ..BatchOptions::default()
                },
            )
            .await?;
        let id = sub.batch_id.map(|b| b.to_string()).unwrap_or_default();
        println!("{id}");
        if sub.duplicates > 0 {
            eprintln!(
                "submitted batch {id}: {} {} jobs; {} targets duplicated open jobs of their unique key and were not inserted",
                n as u64 - sub.duplicates,
                a.job_type,
                sub.duplicates
            );
        } else {
            eprintln!("submitted batch {id}: {n} {} jobs", a.job_type);
        }
        if let (true, Some(batch)) = (a.wait, sub.batch_id) {
            super::wait::batch(client.store().as_ref(), batch).await?;
        }
    } else {
        let jobs: Vec<NewJob> = targets
            .into_iter()
            .map(|t| NewJob {
                job_type: a.job_type.clone(),
                target: t,
                max_attempts: a.max_attempts,
                run_at: a.run_at,
                priority: a.priority,
                queue: a.queue.clone(),
                unique_key: a.unique_key.clone(),
                unique_for,
                traceparent: None,
            })
            .collect();
        for i in client.submit_many_checked(&jobs).await? {
            println!("{}", i.id);
            if i.duplicate {
                eprintln!(
                    "duplicate: job {} of type {} with this unique key already exists; nothing inserted",
                    i.id, a.job_type
                );
            }
        }
    }
    Ok(())
}

/// A configuration mistake (bad URL, bad prefix), as opposed to an unreachable server.
fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::Config(_))))
}

/// One `--target`: valid JSON that the model accepts (size, no NUL), checked here so that a
/// bad one is named by its position before anything reaches the database.
fn parse_target(t: &str) -> anyhow::Result<serde_json::Value> {
    let v = serde_json::from_str(t).context("not valid JSON")?;
    validate_target(&v).map_err(anyhow::Error::msg)?;
    Ok(v)
}

/// Reads JSON Lines; blank lines are skipped, anything else must parse. Errors name the line.
pub fn read_targets(path: &PathBuf) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(BufReader::new(f))
    };
    let mut out = Vec::new();
    // Read at most one byte past the limit per line, so a line without end cannot exhaust
    // memory. The line's length only bounds the reading: the model's limit is on the parsed
    // target as compact JSON, which `validate_target` checks below.
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        n += 1;
        let read = Read::by_ref(&mut reader)
            .take(MAX_TARGET_BYTES as u64 + 2)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("{}: cannot read line {n}", path.display()))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_TARGET_BYTES + 1 {
            bail!(
                "{}:{n}: line longer than {MAX_TARGET_BYTES} bytes",
                path.display()
            );
        }
        let text = std::str::from_utf8(&line)
            .with_context(|| format!("{}:{n}: not UTF-8", path.display()))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let v = serde_json::from_str(text)
            .with_context(|| format!("{}:{n}: not valid JSON", path.display()))?;
        if let Err(e) = validate_target(&v) {
            bail!("{}:{n}: {e}", path.display());
        }
        out.push(v);
        if out.len() > MAX_TARGETS {
            bail!(
                "{}: more than {MAX_TARGETS} targets; split the file",
                path.display()
            );
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no targets (expected one JSON value per line)",
            path.display()
        );
    }
    Ok(out)
}
