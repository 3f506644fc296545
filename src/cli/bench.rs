//! `skiplock bench`: enqueue rate, processing sweep with the raw SQL limit, pickup latency,
//! worker memory. A progress bar while it runs, a table (or `--json`) at the end.

use std::sync::Arc;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use super::Settings;
use crate::bench::{self, BenchConfig};
use crate::config::ChunkSetting;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Jobs per processing run.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Jobs in the enqueue run.
    #[arg(long, default_value_t = 100_000)]
    pub enqueue_jobs: usize,
    /// Settings to sweep, as CONCURRENCY:CHUNK pairs; CHUNK `auto` is the default adaptive
    /// size (up to 1000), `auto:MAX` another ceiling.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16:auto,16:1,64:1,16:100,16:1000"
    )]
    pub sweep: Vec<String>,
    /// Seconds of steady load for the pickup-latency run (0 skips it).
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
    /// Skip the child-worker memory run.
    #[arg(long)]
    pub skip_memory: bool,
    /// Also measure claims over a big table first filled with PENDING:FINISHED rows (e.g.
    /// 1000000:10000000; takes minutes), beside the same on an empty table.
    #[arg(long)]
    pub backlog: Option<String>,
    /// Run the processing phases with `[retention] succeeded = "0s"`: each success deletes
    /// its row in the chunk that completes it.
    #[arg(long)]
    pub delete_succeeded: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(s: &Settings, a: BenchArgs) -> anyhow::Result<()> {
    if a.jobs == 0 || a.jobs > 10_000_000 || a.enqueue_jobs == 0 || a.enqueue_jobs > 10_000_000 {
        bail!("--jobs and --enqueue-jobs must be between 1 and 10000000");
    }
    let mut sweep = Vec::new();
    for p in &a.sweep {
        let parsed = p.split_once(':').and_then(|(c, k)| {
            Some((
                c.trim().parse::<usize>().ok()?,
                k.trim().parse::<ChunkSetting>().ok()?,
            ))
        });
        let size = |k: ChunkSetting| match k {
            ChunkSetting::Auto { max } | ChunkSetting::Fixed(max) => max,
        };
        match parsed {
            Some((c, k)) if (1..=1024).contains(&c) && (1..=10_000).contains(&size(k)) => {
                sweep.push((c, k))
            }
            _ => bail!("--sweep takes CONCURRENCY:CHUNK pairs like 16:1,16:100,16:auto; got {p:?}"),
        }
    }
    let backlog = match &a.backlog {
        None => None,
        Some(b) => match b
            .split_once(':')
            .and_then(|(p, f)| Some((p.trim().parse().ok()?, f.trim().parse().ok()?)))
        {
            Some((p, f)) if p <= 100_000_000 && f <= 1_000_000_000 => Some((p, f)),
            _ => bail!("--backlog takes PENDING:FINISHED like 1000000:10000000; got {b:?}"),
        },
    };
    let cfg = BenchConfig {
        database_url: s.database_url.clone(),
        enqueue_jobs: a.enqueue_jobs,
        jobs: a.jobs,
        sweep,
        latency_secs: a.latency_secs,
        skip_memory: a.skip_memory,
        backlog,
        delete_succeeded: a.delete_succeeded,
    };
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if a.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let pb = bar.clone();
    let progress: bench::Progress = Arc::new(move |phase: &str, f: f64| {
        pb.set_message(phase.to_string());
        pb.set_position((f * 1000.0) as u64);
    });
    let report = bench::run(&cfg, || s.queue_boxed(), progress).await?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
