//! The `skiplock` command line: raw flags (clap) are resolved into [`Settings`] once, then
//! each subcommand lives in its own file.

mod bench;
mod cron;
mod demo;
mod docs;
mod jobs;
pub mod logging;
mod retention;
mod serve;
mod status;
mod submit;
mod wait;
mod watch;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::{
    ChunkSetting, FileConfig, DEFAULT_BIND, DEFAULT_CONCURRENCY, DEFAULT_DATABASE_URL,
    DEFAULT_SCHEMA,
};
use crate::events::{EventBus, LocalBus, RedisBus};
use crate::processor::Registry;
use crate::queue::redis::{RedisQueue, DEFAULT_PREFIX as DEFAULT_REDIS_PREFIX};
use crate::queue::{memory::MemoryQueue, Queue};
use crate::store::{self, Store};

/// Batch and background jobs on the database you already run.
#[derive(Debug, Parser)]
#[command(name = "skiplock", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts; each has an environment variable, and the settings a
/// config-file key.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// TOML file with settings and `[types.NAME]` processors.
    #[arg(long, global = true, env = "SKIPLOCK_CONFIG")]
    pub config: Option<PathBuf>,
    /// postgres://… or sqlite://PATH [default: sqlite://skiplock.db]
    #[arg(long, global = true, env = "SKIPLOCK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// redis://… for the shared queue and events of many nodes [default: in-memory queue]
    #[arg(long, global = true, env = "SKIPLOCK_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments share one Redis
    /// [default: skiplock]
    #[arg(long, global = true, env = "SKIPLOCK_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// PostgreSQL schema holding skiplock's tables [default: skiplock]
    #[arg(long, global = true, env = "SKIPLOCK_SCHEMA")]
    pub schema: Option<String>,
    /// Log lines on stderr as text or as one JSON object per line. The level comes from
    /// SKIPLOCK_LOG, else RUST_LOG (e.g. `debug`, `info,sqlx=warn`).
    #[arg(
        long,
        global = true,
        env = "SKIPLOCK_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade skiplock's tables.
    Migrate,
    /// Run workers and maintenance until SIGINT or SIGTERM.
    Worker(worker::WorkerArgs),
    /// Run workers plus the HTTP API, dashboard and /metrics until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Submit jobs: one per --target, or one per line of --file.
    Submit(submit::SubmitArgs),
    /// Counts by type and status, per batch, per node.
    Status(status::StatusArgs),
    /// Print status events as they happen, from every node (needs --redis-url).
    Watch(watch::WatchArgs),
    /// Inspect jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Scheduled jobs: `cron list` shows each entry's last and next run.
    #[command(subcommand)]
    Cron(cron::CronCommand),
    /// Measure enqueue and processing rates, pickup latency and memory on this machine.
    Bench(bench::BenchArgs),
    /// A whole run on the embedded default: submit a sample batch, process it, report.
    Demo(demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Print the man page, or write one per command with --out-dir.
    Man(docs::ManArgs),
}

impl Command {
    /// Whether the command's own output is the point (so logs default to warnings only).
    pub fn is_quiet(&self) -> bool {
        matches!(
            self,
            Command::Bench(_)
                | Command::Status(_)
                | Command::Jobs(_)
                | Command::Cron(_)
                | Command::Submit(_)
                | Command::Demo(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }
}

/// Resolved settings: flag, then environment, then config file, then default.
pub struct Settings {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub schema: String,
    pub file: FileConfig,
}

impl Settings {
    pub fn resolve(g: &GlobalArgs) -> anyhow::Result<Self> {
        let file = match &g.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        // An empty URL means unset (an empty environment variable is how a deployment
        // turns Redis off).
        let pick = |flag: &Option<String>, file: &Option<String>| {
            flag.clone()
                .or_else(|| file.clone())
                .filter(|s| !s.trim().is_empty())
        };
        let config = g.config.as_deref();
        let settings = Settings {
            database_url: pick(&g.database_url, &file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
            redis_url: pick(&g.redis_url, &file.redis_url),
            redis_prefix: named(
                Named::REDIS_PREFIX,
                &g.redis_prefix,
                &file.redis_prefix,
                config,
            )?
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_string()),
            schema: named(Named::SCHEMA, &g.schema, &file.schema, config)?
                .unwrap_or_else(|| DEFAULT_SCHEMA.to_string()),
            file,
        };
        settings.check_single_node()?;
        Ok(settings)
    }

    /// Redis exists to share a queue between nodes; a SQLite file serves exactly one node
    /// (its writes are serialised within one process). Refuse the pair before anything runs.
    fn check_single_node(&self) -> anyhow::Result<()> {
        if self.redis_url.is_some() && self.database_url.starts_with("sqlite:") {
            bail!(
                "a Redis queue is for several nodes, and several nodes need PostgreSQL: \
                 SQLite ({}) serves a single node with the in-memory queue. \
                 Use --database-url postgres://… or drop --redis-url",
                store::redact_url(&self.database_url)
            );
        }
        Ok(())
    }

    pub fn concurrency(&self, flag: Option<usize>) -> usize {
        flag.or(self.file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
    }

    pub fn chunk_size(&self, flag: Option<ChunkSetting>) -> ChunkSetting {
        flag.or(self.file.chunk_size).unwrap_or_default()
    }

    pub fn bind(&self, flag: Option<String>) -> String {
        flag.or_else(|| self.file.bind.clone())
            .unwrap_or_else(|| DEFAULT_BIND.to_string())
    }

    pub fn registry(&self) -> anyhow::Result<Registry> {
        Ok(self.file.registry()?)
    }

    /// Opens the store (migrating it first when asked).
    pub async fn store(&self, pool_size: u32, migrate: bool) -> anyhow::Result<Arc<dyn Store>> {
        self.store_guarded(pool_size, migrate, None).await
    }

    /// [`Settings::store`] for a node: sessions idle in a transaction longer than
    /// `idle_tx_limit` are cut off by the server (see [`store::connect`]).
    pub async fn store_guarded(
        &self,
        pool_size: u32,
        migrate: bool,
        idle_tx_limit: Option<std::time::Duration>,
    ) -> anyhow::Result<Arc<dyn Store>> {
        let s = store::connect(&self.database_url, &self.schema, pool_size, idle_tx_limit)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    store::redact_url(&self.database_url)
                )
            })?;
        // An embedded SQLite file is created on first use, so give it its tables too: a
        // `status` in an empty folder then reports nothing instead of "no such table".
        if migrate || s.backend() == "sqlite" {
            s.migrate().await.context("migration failed")?;
        }
        Ok(s)
    }

    pub async fn queue(&self) -> anyhow::Result<Arc<dyn Queue>> {
        match &self.redis_url {
            None => Ok(Arc::new(MemoryQueue::default())),
            Some(url) => Ok(Arc::new(
                RedisQueue::connect(url, &self.redis_prefix)
                    .await
                    .context("cannot open the Redis queue")?,
            )),
        }
    }

    /// [`Settings::queue`] with the library's error type, for library code that takes a
    /// queue factory.
    pub async fn queue_boxed(&self) -> crate::error::Result<Arc<dyn Queue>> {
        self.queue()
            .await
            .map_err(|e| crate::error::Error::Config(format!("{e:#}")))
    }

    /// Redis pub/sub when Redis is configured (events reach every node), in process otherwise.
    pub async fn bus(&self) -> anyhow::Result<Arc<dyn EventBus>> {
        match &self.redis_url {
            None => Ok(Arc::new(LocalBus::default())),
            Some(url) => Ok(Arc::new(
                RedisBus::connect(url, &self.redis_prefix)
                    .await
                    .context("cannot open Redis for status events")?,
            )),
        }
    }
}

/// A setting that names where data lives (a schema, a key prefix), with every way to give it.
struct Named {
    flag: &'static str,
    env: &'static str,
    key: &'static str,
    default: &'static str,
}

impl Named {
    const SCHEMA: Named = Named {
        flag: "--schema",
        env: "SKIPLOCK_SCHEMA",
        key: "schema",
        default: DEFAULT_SCHEMA,
    };
    const REDIS_PREFIX: Named = Named {
        flag: "--redis-prefix",
        env: "SKIPLOCK_REDIS_PREFIX",
        key: "redis_prefix",
        default: DEFAULT_REDIS_PREFIX,
    };
}

/// The flag's (or environment's) value, else the file's. A blank one is refused rather than
/// taken as "unset": the default would put tables or keys somewhere the user did not ask
/// for, perhaps beside another deployment's.
fn named(
    n: Named,
    flag: &Option<String>,
    file: &Option<String>,
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    let hint = format!(
        "give a name, or leave it unset for the default {:?}",
        n.default
    );
    match (flag, file) {
        (Some(v), _) if v.trim().is_empty() => {
            bail!("{} (or {}) is empty: {hint}", n.flag, n.env)
        }
        (Some(v), _) => Ok(Some(v.clone())),
        (None, Some(v)) if v.trim().is_empty() => {
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            bail!("{path}: `{}` is empty: {hint}", n.key)
        }
        (None, v) => Ok(v.clone()),
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Generated documentation needs no settings: a packaging step runs these where no config
    // file or database exists.
    match &cli.command {
        Command::Completions(a) => return docs::completions(a),
        Command::Man(a) => return docs::man(a),
        _ => {}
    }
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Migrate => {
            settings.store(2, true).await?;
            println!("migrated {}", store::redact_url(&settings.database_url));
            Ok(())
        }
        Command::Worker(a) => worker::run(&settings, a).await,
        Command::Serve(a) => serve::run(&settings, a).await,
        Command::Submit(a) => submit::run(&settings, a).await,
        Command::Status(a) => status::run(&settings, a).await,
        Command::Jobs(c) => jobs::run(&settings, c).await,
        Command::Cron(c) => cron::run(&settings, c).await,
        Command::Bench(a) => bench::run(&settings, a).await,
        Command::Watch(a) => watch::run(&settings, a).await,
        Command::Demo(a) => demo::run(&settings, a).await,
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
    }
}
