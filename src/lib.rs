//! skiplock: batch and background jobs on the database you already run.
//!
//! Jobs are rows; a queue carries only their IDs. A worker pops an ID, locks the row with
//! `SELECT … FOR UPDATE SKIP LOCKED`, runs the job's processor in that transaction behind a
//! savepoint, and records the outcome before it commits.
//!
//! The modules, in the order data flows through them:
//!
//! - [`job`]: the model: `Job`, `JobStatus`, `NewJob`, `Batch`.
//! - [`client`]: submitting: insert and commit, then push the IDs.
//! - [`store`]: all SQL, behind the `Store` seam (PostgreSQL; SQLite for one node).
//! - [`queue`]: job IDs in flight to workers, behind the `Queue` seam (memory; Redis).
//! - [`executor`]: per node, the runner tasks running the transactional flow.
//! - [`processor`]: the `Processor` trait, the registry, built-in and `sql` processors.
//! - [`node_state`]: a node's identity and live counters, shared by executor and maintenance.
//! - [`maintenance`]: reconciler (with the rescue of abandoned jobs), heartbeats, pruning.
//! - [`events`]: live status events (`running`, `succeeded`, `failed`, `retrying`).
//! - [`report`]: the status report and its rendering.
//! - [`metrics`]: Prometheus counters.
//! - [`otel`]: a span per job attempt, continuing the trace its submit was made in.
//! - [`node`]: a node assembled: executor plus maintenance, with graceful shutdown.
//!
//! Names: a *node* is one process running jobs (`skiplock worker` or `skiplock serve` starts
//! one; [`Node`] embeds one); its *runners* are the `concurrency` tasks that each run one
//! chunk at a time on their own *slot* at the store.
//! - `api`: the HTTP API, dashboard and `/metrics` (axum), served by `skiplock serve`.
//! - [`config`]: the binary's settings file and its configurable processors.
//!
//! The `skiplock` binary (its subcommands and `skiplock bench`) sits on top of this library
//! in `src/main.rs`. Cargo features choose what the library builds with: `postgres`,
//! `sqlite`, `redis`, `server` (the `api` module), `http` (the `http` processor), `otel`
//! (OpenTelemetry context and the OTLP exporter);
//! the README has the table.

// With neither store built in, a user brings their own `Store`; the helpers the built-in
// stores share are then unused.
#![cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]

#[cfg(feature = "server")]
pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod executor;
pub mod job;
pub mod maintenance;
pub mod metrics;
pub mod node;
pub mod node_state;
pub mod otel;
pub mod processor;
pub mod queue;
#[cfg(feature = "redis")]
mod redis_conn;
pub mod report;
pub mod store;

pub use client::Client;
pub use error::{Error, Result};
pub use events::{Event, EventBus, EventStatus};
pub use job::{Due, Job, JobStatus, NewJob, Submitted};
pub use node::{Node, NodeConfig};
pub use processor::{Mode, ProcessError, Processor, Registry, TypeOptions, Typed, TypedProcessor};
pub use store::{JobTx, Store};
