//! Processors: what runs a job of a given type. The [`Processor`] trait receives the job and
//! its transaction; the [`Registry`] maps types to processors and their retry policy. The
//! binary's configurable processors are `sql`, `http` and `command`.

mod builtin;
mod command;
#[cfg(feature = "http")]
mod http;
mod sql;
#[cfg(feature = "http")]
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

pub use builtin::{Fail, Noop, Sleep};
pub use command::CommandProcessor;
#[cfg(feature = "http")]
pub use http::HttpProcessor;
pub use sql::SqlProcessor;
#[cfg(feature = "http")]
pub(crate) use tls::client_config as tls_client_config;

use crate::error::{Error, Result};
use crate::job::{validate_type, Job, DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS};
use crate::store::JobTx;

/// Why a processor failed, and whether another attempt may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    pub message: String,
    /// `false` ends the job `failed` at once, whatever attempts remain (a bad target will not
    /// get better by waiting).
    pub retryable: bool,
}

impl ProcessError {
    /// A failure that another attempt may fix (a timeout, a busy resource).
    pub fn retry(message: impl Into<String>) -> Self {
        ProcessError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry will fix (an invalid target, a missing processor).
    pub fn fatal(message: impl Into<String>) -> Self {
        ProcessError {
            message: message.into(),
            retryable: false,
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProcessError {}

/// Database errors inside a processor are worth a retry: serialization failures, deadlocks and
/// timeouts are transient, and a constraint violation costs only the remaining attempts.
impl From<Error> for ProcessError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => ProcessError::fatal(m),
            other => ProcessError::retry(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ProcessError {
    fn from(e: sqlx::Error) -> Self {
        ProcessError::from(Error::Database(e))
    }
}

/// Runs jobs of one type inside the job's transaction.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Processes `job`. Writes through `tx` commit with the job's outcome, or roll back to
    /// the job's savepoint if this returns an error, panics or runs out of time. In `lease`
    /// mode no transaction is open while this runs: `tx` refuses to be used (see
    /// [`JobTx::attached`]), and a final write belongs in [`Processor::complete`].
    async fn process(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError>;

    /// Lease mode only: called after a successful [`Processor::process`], inside the short
    /// transaction that records the outcome, so that its writes and the outcome commit
    /// together (and roll back together if it fails). Nothing by default.
    async fn complete(&self, _job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// A processor whose target is a typed value: the target is deserialised before the
/// processor runs, and one that does not fit ends the job `failed` with the reason.
#[async_trait]
pub trait TypedProcessor: Send + Sync + 'static {
    type Target: DeserializeOwned + Send;

    async fn process(
        &self,
        job: &Job,
        target: Self::Target,
        tx: &mut JobTx<'_>,
    ) -> Result<(), ProcessError>;

    /// See [`Processor::complete`].
    async fn complete(
        &self,
        _job: &Job,
        _target: Self::Target,
        _tx: &mut JobTx<'_>,
    ) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// Adapts a [`TypedProcessor`] to [`Processor`].
pub struct Typed<P>(pub P);

#[async_trait]
impl<P: TypedProcessor> Processor for Typed<P> {
    async fn complete(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let target = serde_json::from_value::<P::Target>(job.target.clone())
            .map_err(|e| ProcessError::fatal(format!("invalid target: {e}")))?;
        self.0.complete(job, target, tx).await
    }

    async fn process(&self, job: &Job, tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        let target = serde_json::from_value::<P::Target>(job.target.clone())
            .map_err(|e| ProcessError::fatal(format!("invalid target: {e}")))?;
        self.0.process(job, target, tx).await
    }
}

/// How a type's jobs run. See the README's table for when each is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The processor runs inside the transaction that holds the job's row lock; its writes
    /// and the outcome commit together. For jobs that write to the database.
    #[default]
    Tx,
    /// A short transaction claims the job (`running`, leased to the node, attempt charged);
    /// the processor runs with no transaction open; a short fenced transaction records the
    /// outcome. For jobs that take long or work elsewhere (webhooks, programs).
    Lease,
}

/// A type's retry and time policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeOptions {
    /// Attempts before a job ends `failed`; new jobs of the type get this. Default 3.
    pub max_attempts: i32,
    /// The processor's time limit. Default 60 s.
    pub timeout: Duration,
    /// First retry delay; doubles each attempt, with jitter. Default 1 s.
    pub backoff: Duration,
    /// How its jobs run. Default `tx`; the built-in `sleep` and the `http` and `command`
    /// processors default to `lease`.
    pub mode: Mode,
}

impl Default for TypeOptions {
    fn default() -> Self {
        TypeOptions {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
            mode: Mode::Tx,
        }
    }
}

impl TypeOptions {
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(Error::Config(format!(
                "max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}, got {}",
                self.max_attempts
            )));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(24 * 3600) {
            return Err(Error::Config(
                "timeout_ms must be between 1 and 86400000".into(),
            ));
        }
        if self.backoff > Duration::from_secs(7 * 24 * 3600) {
            return Err(Error::Config("backoff_ms must be at most a week".into()));
        }
        Ok(())
    }

    /// Delay before attempt `attempts + 1`: `backoff · 2^(attempts-1)`, capped at an hour,
    /// with ±25 % jitter so that a burst of failures does not retry in lockstep.
    pub fn retry_delay(&self, attempts: i32) -> Duration {
        let exp = attempts.saturating_sub(1).clamp(0, 20) as u32;
        let base = self
            .backoff
            .saturating_mul(1 << exp)
            .min(Duration::from_secs(3600));
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        base.mul_f64(jitter)
    }
}

/// Each known type's options without its processor: what a node (or `submit`) publishes to
/// the database, where every insert path applies it (see [`crate::Store::publish_policy`]).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    types: HashMap<String, TypeOptions>,
    /// Types whose jobs go to a named queue other than `default` unless a job says otherwise.
    queues: HashMap<String, String>,
    unique: HashMap<String, UniquePolicy>,
}

/// A type's uniqueness: the target fields its jobs' unique key is made of (`unique = [...]`),
/// and how long a key also blocks jobs that finished (`unique_for`). The key is the JSON array
/// of those fields' values; a target that lacks one of them (or is not an object) is refused,
/// since treating a missing field as `null` would silently merge unrelated jobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UniquePolicy {
    /// Top-level target fields, in key order. Empty: no derived key (a window alone then
    /// applies to keys given at insert).
    pub fields: Vec<String>,
    pub window: Option<Duration>,
}

/// Most fields a derived key may name: a key identifies a thing, a few fields at most.
pub const MAX_UNIQUE_FIELDS: usize = 16;

impl UniquePolicy {
    pub fn validate(&self) -> Result<()> {
        if self.fields.len() > MAX_UNIQUE_FIELDS {
            return Err(Error::Config(format!(
                "unique names {} fields; at most {MAX_UNIQUE_FIELDS}",
                self.fields.len()
            )));
        }
        for f in &self.fields {
            if f.is_empty() || f.len() > 200 || f.contains('\0') {
                return Err(Error::Config(format!(
                    "unique field {f:?} must be a target field name of 1 to 200 bytes"
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(f) = self.fields.iter().find(|f| !seen.insert(*f)) {
            return Err(Error::Config(format!("unique names field {f:?} twice")));
        }
        if let Some(w) = self.window {
            crate::job::validate_unique_for(w).map_err(Error::Config)?;
        }
        if self.fields.is_empty() && self.window.is_none() {
            return Err(Error::Config(
                "unique must name at least one target field".into(),
            ));
        }
        Ok(())
    }
}

impl Policy {
    /// A type's uniqueness, if it has one.
    pub fn unique(&self, job_type: &str) -> Option<&UniquePolicy> {
        self.unique.get(job_type)
    }

    /// The queue a type's jobs go to when they name none; `None`: `default`.
    pub fn queue(&self, job_type: &str) -> Option<&str> {
        self.queues.get(job_type).map(String::as_str)
    }

    /// Each known type with its options, sorted by type.
    pub fn types(&self) -> Vec<(&str, TypeOptions)> {
        let mut v: Vec<_> = self.types.iter().map(|(t, o)| (t.as_str(), *o)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// A registered processor with its policy.
#[derive(Clone)]
pub struct Registered {
    pub processor: Arc<dyn Processor>,
    pub options: TypeOptions,
}

/// Processors by job type. Registering a type twice is an error: fail at start-up, not when
/// the second one silently wins.
#[derive(Clone, Default)]
pub struct Registry {
    types: HashMap<String, Registered>,
    /// Each type's named queue, where one is set (see [`Registry::set_queue`]).
    queues: HashMap<String, String>,
    /// Types' uniqueness, published with their policy (see [`UniquePolicy`]).
    unique: HashMap<String, UniquePolicy>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in `noop`, `sleep` and `fail` types, for demos, tests and benchmarks.
    pub fn with_builtins() -> Self {
        let mut r = Self::new();
        let o = TypeOptions::default();
        r.register("noop", Noop, o).expect("fresh registry");
        let lease = TypeOptions {
            mode: Mode::Lease,
            ..o
        };
        r.register("sleep", Typed(Sleep), lease)
            .expect("fresh registry");
        r.register("fail", Fail, o).expect("fresh registry");
        r
    }

    pub fn register(
        &mut self,
        job_type: &str,
        processor: impl Processor,
        options: TypeOptions,
    ) -> Result<()> {
        self.register_arc(job_type, Arc::new(processor), options)
    }

    pub fn register_arc(
        &mut self,
        job_type: &str,
        processor: Arc<dyn Processor>,
        options: TypeOptions,
    ) -> Result<()> {
        validate_type(job_type).map_err(Error::Config)?;
        options.validate()?;
        if self.types.contains_key(job_type) {
            return Err(Error::Config(format!(
                "a processor for type {job_type:?} is already registered"
            )));
        }
        self.types
            .insert(job_type.to_string(), Registered { processor, options });
        Ok(())
    }

    /// Changes the policy of a registered type (a config file tuning a built-in).
    pub fn set_options(&mut self, job_type: &str, options: TypeOptions) -> Result<()> {
        options.validate()?;
        match self.types.get_mut(job_type) {
            Some(r) => {
                r.options = options;
                Ok(())
            }
            None => Err(Error::Config(format!("no processor for type {job_type:?}"))),
        }
    }

    /// Sends the type's jobs to a named queue unless a job names its own: published with the
    /// policy, so every insert path applies it (`queue = "…"` in `[types.X]`).
    pub fn set_queue(&mut self, job_type: &str, queue: &str) -> Result<()> {
        crate::job::validate_queue(queue).map_err(Error::Config)?;
        if !self.types.contains_key(job_type) {
            return Err(Error::Config(format!("no processor for type {job_type:?}")));
        }
        self.queues.insert(job_type.to_string(), queue.to_string());
        Ok(())
    }

    /// The queue a type's jobs go to when they name none.
    pub fn queue(&self, job_type: &str) -> &str {
        self.queues
            .get(job_type)
            .map_or(crate::job::DEFAULT_QUEUE, String::as_str)
    }

    /// Makes a registered type's jobs unique by `policy` (see [`UniquePolicy`]).
    pub fn set_unique(&mut self, job_type: &str, policy: UniquePolicy) -> Result<()> {
        policy.validate()?;
        if !self.types.contains_key(job_type) {
            return Err(Error::Config(format!("no processor for type {job_type:?}")));
        }
        self.unique.insert(job_type.to_string(), policy);
        Ok(())
    }

    pub fn get(&self, job_type: &str) -> Option<&Registered> {
        self.types.get(job_type)
    }

    /// The policy for a type, or the defaults for one not registered here.
    pub fn options(&self, job_type: &str) -> TypeOptions {
        self.get(job_type).map(|r| r.options).unwrap_or_default()
    }

    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// The types' options, for a [`crate::Client`].
    pub fn policy(&self) -> Policy {
        Policy {
            types: self
                .types
                .iter()
                .map(|(t, r)| (t.clone(), r.options))
                .collect(),
            queues: self.queues.clone(),
            unique: self.unique.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_type_is_refused() {
        let mut r = Registry::with_builtins();
        let e = r
            .register("noop", Noop, TypeOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("already registered"), "{e}");
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let o = TypeOptions {
            backoff: Duration::from_millis(1000),
            ..TypeOptions::default()
        };
        for attempt in 1..=4 {
            let base = 1000.0 * 2f64.powi(attempt - 1);
            let d = o.retry_delay(attempt).as_millis() as f64;
            assert!(
                d >= base * 0.75 && d <= base * 1.25,
                "attempt {attempt}: {d}"
            );
        }
        assert!(o.retry_delay(1000) <= Duration::from_secs(4500));
    }

    #[test]
    fn options_are_validated() {
        let bad = TypeOptions {
            max_attempts: 0,
            ..TypeOptions::default()
        };
        assert!(bad.validate().is_err());
        let bad = TypeOptions {
            timeout: Duration::ZERO,
            ..TypeOptions::default()
        };
        assert!(bad.validate().is_err());
    }
}
