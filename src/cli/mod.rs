//! The `skiplock` command line: raw flags (clap) are resolved into [`Settings`] once, then
//! each subcommand lives in its own file.

mod demo;
mod jobs;
mod status;
mod submit;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::{
    FileConfig, DEFAULT_BIND, DEFAULT_CONCURRENCY, DEFAULT_DATABASE_URL, DEFAULT_SCHEMA,
};
use crate::events::{EventBus, LocalBus};
use crate::processor::Registry;
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

/// Flags every subcommand accepts; each has an environment variable and a config-file key.
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
    /// PostgreSQL schema holding skiplock's tables [default: skiplock]
    #[arg(long, global = true, env = "SKIPLOCK_SCHEMA")]
    pub schema: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade skiplock's tables.
    Migrate,
    /// Run workers and maintenance until SIGINT or SIGTERM.
    Worker(worker::WorkerArgs),
    /// Submit jobs: one per --target, or one per line of --file.
    Submit(submit::SubmitArgs),
    /// Counts by type and status, per batch, per node.
    Status(status::StatusArgs),
    /// Inspect jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// A whole run on the embedded default: submit a sample batch, process it, report.
    Demo(demo::DemoArgs),
}

/// Resolved settings: flag, then environment, then config file, then default.
pub struct Settings {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub schema: String,
    pub file: FileConfig,
}

impl Settings {
    pub fn resolve(g: &GlobalArgs) -> anyhow::Result<Self> {
        let file = match &g.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let pick = |flag: &Option<String>, file: &Option<String>| {
            flag.clone()
                .or_else(|| file.clone())
                .filter(|s| !s.trim().is_empty())
        };
        let settings = Settings {
            database_url: pick(&g.database_url, &file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
            redis_url: pick(&g.redis_url, &file.redis_url),
            schema: pick(&g.schema, &file.schema).unwrap_or_else(|| DEFAULT_SCHEMA.to_string()),
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

    pub fn chunk_size(&self, flag: Option<usize>) -> usize {
        flag.or(self.file.chunk_size).unwrap_or(1)
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
        let s = store::connect(&self.database_url, &self.schema, pool_size)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    store::redact_url(&self.database_url)
                )
            })?;
        if migrate {
            s.migrate().await.context("migration failed")?;
        }
        Ok(s)
    }

    pub async fn queue(&self) -> anyhow::Result<Arc<dyn Queue>> {
        match &self.redis_url {
            None => Ok(Arc::new(MemoryQueue::default())),
            Some(_) => bail!("the Redis queue is not available in this build"),
        }
    }

    pub async fn bus(&self) -> anyhow::Result<Arc<dyn EventBus>> {
        Ok(Arc::new(LocalBus::default()))
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Migrate => {
            settings.store(2, true).await?;
            println!("migrated {}", store::redact_url(&settings.database_url));
            Ok(())
        }
        Command::Worker(a) => worker::run(&settings, a).await,
        Command::Submit(a) => submit::run(&settings, a).await,
        Command::Status(a) => status::run(&settings, a).await,
        Command::Jobs(c) => jobs::run(&settings, c).await,
        Command::Demo(a) => demo::run(&settings, a).await,
    }
}
