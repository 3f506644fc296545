//! `skiplock bench`: enqueue rate, processing sweep with the raw SQL limit, pickup latency,
//! worker memory. A progress bar while it runs, a table (or `--json`) at the end.

use std::sync::Arc;
use std::time::Duration;

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
    /// size (up to 1000), `auto:MAX` another ceiling. Default: 16:auto,16:1,64:1,16:100,16:1000
    /// (on SQLite, 4:auto,4:1,4:100,4:1000).
    #[arg(long, value_delimiter = ',')]
    pub sweep: Option<Vec<String>>,
    /// Seconds of steady load for the pickup-latency run (0 skips it).
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
    /// Jobs per second offered in the pickup-latency runs, instead of half the measured peak:
    /// run it at a few rates to see how pickup latency grows with the load.
    #[arg(long, value_name = "JOBS_PER_SEC", value_parser = jobs_per_sec)]
    pub latency_rate: Option<f64>,
    /// Skip the child-worker memory run.
    #[arg(long)]
    pub skip_memory: bool,
    /// The scale phase (see --scale) with the fill given as PENDING:FINISHED rows (e.g.
    /// 1000000:10000000; takes minutes).
    #[arg(long, conflicts_with = "scale")]
    pub backlog: Option<String>,
    /// Also measure the cost of unique keys at insert: --enqueue-jobs jobs inserted plain,
    /// with a unique key each, and again as duplicates, side by side.
    #[arg(long)]
    pub unique: bool,
    /// The scale phase: claims, the claim rate and the status report over a table first
    /// filled with PENDING:FINISHED rows, beside an empty one; alone, 1000000:10000000.
    #[arg(long, value_name = "PENDING:FINISHED", num_args = 0..=1,
          default_missing_value = bench::DEFAULT_SCALE)]
    pub scale: Option<String>,
    /// The soak phase: half the default settings' peak offered for this long (e.g. 30m).
    #[arg(long, value_name = "DURATION", value_parser = soak_duration)]
    pub soak: Option<Duration>,
    /// How often the soak phase prints a line.
    #[arg(long, value_name = "DURATION", default_value = "60s", requires = "soak",
          value_parser = soak_duration)]
    pub soak_interval: Duration,
    /// The idle-transaction phase: another session left idle in a transaction this long
    /// (e.g. 5m), under a steady load, then the recovery after it ends.
    #[arg(long, value_name = "DURATION", value_parser = idle_duration)]
    pub idle_tx: Option<Duration>,
    /// Jobs per second offered during the idle-transaction phase.
    #[arg(long, default_value_t = 800.0, requires = "idle_tx", value_parser = jobs_per_sec)]
    pub idle_rate: f64,
    /// Run the processing phases with `[retention] succeeded = "0s"`: each success deletes
    /// its row in the chunk that completes it.
    #[arg(long)]
    pub delete_succeeded: bool,
    /// Run every phase with the report's count triggers disabled: beside a run without this,
    /// what keeping the counts costs.
    #[arg(long)]
    pub without_counters: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(s: &Settings, a: BenchArgs) -> anyhow::Result<()> {
    if a.jobs == 0 || a.jobs > 10_000_000 || a.enqueue_jobs == 0 || a.enqueue_jobs > 10_000_000 {
        bail!("--jobs and --enqueue-jobs must be between 1 and 10000000");
    }
    let on_sqlite = s.database_url.starts_with("sqlite:");
    let default_sweep = if on_sqlite {
        bench::sqlite::DEFAULT_SWEEP
    } else {
        DEFAULT_SWEEP
    };
    let pairs = a
        .sweep
        .clone()
        .unwrap_or_else(|| default_sweep.split(',').map(String::from).collect());
    let mut sweep = Vec::new();
    for p in &pairs {
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
    let backlog = match a.backlog.as_ref().or(a.scale.as_ref()) {
        None => None,
        Some(b) => match b
            .split_once(':')
            .and_then(|(p, f)| Some((p.trim().parse().ok()?, f.trim().parse().ok()?)))
        {
            Some((p, f)) if p <= 100_000_000 && f <= 1_000_000_000 => Some((p, f)),
            _ => bail!(
                "--backlog and --scale take PENDING:FINISHED like 1000000:10000000; got {b:?}"
            ),
        },
    };
    if on_sqlite {
        let only_pg = [
            ("--backlog/--scale", backlog.is_some()),
            ("--unique", a.unique),
            ("--soak", a.soak.is_some()),
            ("--idle-tx", a.idle_tx.is_some()),
        ];
        if let Some((flag, _)) = only_pg.iter().find(|(_, given)| *given) {
            bail!("{flag} is a PostgreSQL phase; bench on SQLite runs enqueue and processing");
        }
    }
    let cfg = BenchConfig {
        database_url: s.database_url.clone(),
        enqueue_jobs: a.enqueue_jobs,
        jobs: a.jobs,
        sweep,
        latency_secs: a.latency_secs,
        latency_rate: a.latency_rate,
        skip_memory: a.skip_memory,
        backlog,
        unique: a.unique,
        soak: a.soak.map(|d| (d, a.soak_interval)),
        idle_tx: a.idle_tx.map(|d| (d, a.idle_rate)),
        delete_succeeded: a.delete_succeeded,
        without_counters: a.without_counters,
    };
    if let Some((soak, every)) = cfg.soak {
        if every > soak {
            bail!("--soak-interval ({every:?}) is longer than --soak ({soak:?})");
        }
    }
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
    let pb = bar.clone();
    let line: bench::Line = Arc::new(move |l: &str| pb.suspend(|| eprintln!("{l}")));
    if on_sqlite {
        let report = bench::sqlite::run(&cfg, || s.queue_boxed(), progress).await?;
        bar.finish_and_clear();
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.render());
        }
        return Ok(());
    }
    let report = bench::run(&cfg, || s.queue_boxed(), progress, line).await?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// The sweep on PostgreSQL when `--sweep` is not given.
const DEFAULT_SWEEP: &str = "16:auto,16:1,64:1,16:100,16:1000";

/// The longest soak, and the longest idle transaction: beyond these a typo is likelier.
const MAX_SOAK: Duration = Duration::from_secs(7 * 86_400);
const MAX_IDLE: Duration = Duration::from_secs(86_400);

/// A duration as people write it (`90s`, `30m`, `1h 30m`), at least a second, at most `max`.
fn duration_within(s: &str, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; give a duration such as 90s, 30m or 1h 30m"))?;
    if d < Duration::from_secs(1) {
        return Err("give at least 1s".into());
    }
    if d > max {
        return Err(format!("at most {}", humantime::format_duration(max)));
    }
    Ok(d)
}

fn soak_duration(s: &str) -> Result<Duration, String> {
    duration_within(s, MAX_SOAK)
}

fn idle_duration(s: &str) -> Result<Duration, String> {
    duration_within(s, MAX_IDLE)
}

fn jobs_per_sec(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err("give jobs per second, above 0 and at most 1000000".into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::BenchArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn scale_alone_fills_a_million_pending_and_ten_million_finished() {
        let cli = Cli::try_parse_from(["bench", "--scale"]).unwrap();
        assert_eq!(cli.bench.scale.as_deref(), Some("1000000:10000000"));
        let cli = Cli::try_parse_from(["bench", "--scale", "5:50"]).unwrap();
        assert_eq!(cli.bench.scale.as_deref(), Some("5:50"));
        let cli = Cli::try_parse_from(["bench"]).unwrap();
        assert!(cli.bench.scale.is_none() && cli.bench.soak.is_none());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let cli =
            Cli::try_parse_from(["bench", "--soak", "1h 30m", "--soak-interval", "90s"]).unwrap();
        assert_eq!(cli.bench.soak, Some(std::time::Duration::from_secs(5400)));
        assert_eq!(cli.bench.soak_interval.as_secs(), 90);
        let cli = Cli::try_parse_from(["bench", "--idle-tx", "5m"]).unwrap();
        assert_eq!(cli.bench.idle_tx.map(|d| d.as_secs()), Some(300));
        assert_eq!(cli.bench.idle_rate, 800.0);
    }

    #[test]
    fn a_latency_rate_is_jobs_per_second_within_bounds() {
        let cli = Cli::try_parse_from(["bench", "--latency-rate", "2500"]).unwrap();
        assert_eq!(cli.bench.latency_rate, Some(2500.0));
        assert!(Cli::try_parse_from(["bench"])
            .unwrap()
            .bench
            .latency_rate
            .is_none());
        for bad in ["0", "-5", "", "fast", "NaN", "inf", "1e9"] {
            let e = Cli::try_parse_from(["bench".to_string(), format!("--latency-rate={bad}")])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was taken"));
            assert!(e.to_string().contains("jobs per second"), "{bad:?}: {e}");
        }
    }
}
