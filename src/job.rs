//! The model: a job is a row, identified by a UUID v7, with a type, a JSON target and a status.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job's stored status. In `tx` mode a running job's row is locked and still `pending`, so
/// a crash can never strand it in a half state. In `lease` mode it is `running` while its
/// processor runs outside any transaction, owned by a node until a lease deadline that the
/// node keeps extending; an expired lease is rescued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    /// Lease mode only: claimed by a node, its processor running.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Finished jobs never run again (unless retried by hand).
    pub fn is_finished(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?} (expected pending, running, succeeded, failed or cancelled)"
                )
            })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub target: serde_json::Value,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub priority: i16,
    pub batch_id: Option<Uuid>,
    /// The named queue it waits in: only nodes serving this queue run it.
    pub queue: String,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The node that recorded the job's last outcome.
    pub node_id: Option<String>,
    /// The W3C trace context its submit was made in: each attempt's span continues that
    /// trace. Absent when the submit was traced by nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Failed attempts a job keeps in its history, newest last; older ones are dropped as new
/// ones arrive. Twenty covers any sensible retry policy's whole run (the default is 3
/// attempts) while bounding a row: errors are at most 4 KiB each, so a history is at most
/// about 80 KiB, stored compressed out of line, and only failures ever write it.
pub const ATTEMPT_HISTORY_LEN: usize = 20;

/// One failed attempt, as a job's history keeps it. Successes are not kept: the job's own
/// `finished_at` and `node_id` say when and where it succeeded, and the success path writes
/// nothing extra.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// Which attempt it was, from 1, counted since the job was submitted or last retried by
    /// hand (a manual retry starts the count again; the history stays).
    pub attempt: i32,
    /// When its failure was recorded.
    pub at: DateTime<Utc>,
    /// The node that ran it.
    pub node: Option<String>,
    /// How long it ran, in milliseconds; `null` when nobody could measure it (its node died
    /// mid-job and the attempt was charged by another).
    pub took_ms: Option<i64>,
    /// Its error.
    pub error: String,
    /// What followed: `retry` (back to pending) or `failed` (attempts spent or futile).
    pub outcome: String,
}

/// A job with its attempt history: what `jobs show`, `GET /api/v1/jobs/{id}` and the
/// dashboard's job page show. Lists and the workers read [`Job`] alone, so the history costs
/// nothing on those paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    /// The last [`ATTEMPT_HISTORY_LEN`] failed attempts, oldest first.
    pub attempt_history: Vec<Attempt>,
}

impl JobDetail {
    /// Reads a stored history (a JSON array, or nothing when the job never failed).
    pub fn new(job: Job, history: Option<serde_json::Value>) -> Result<Self, serde_json::Error> {
        let attempt_history = match history {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v)?,
        };
        Ok(JobDetail {
            job,
            attempt_history,
        })
    }
}

/// Defaults for a job that does not say otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;
/// Largest accepted `max_attempts`: beyond this a job is a loop, not a retry policy.
pub const MAX_MAX_ATTEMPTS: i32 = 1000;
/// Longest job type name; types are identifiers, not payloads.
pub const MAX_TYPE_LEN: usize = 200;
/// The queue of a job that names none and whose type's policy names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Longest queue name: a queue names a Redis key and a config entry, not a payload.
pub const MAX_QUEUE_LEN: usize = 64;
/// Largest accepted target, measured as compact JSON. Jobs carry references to data (a key,
/// a URL), not the data itself: a row this size is already slow to lock, load and log. Every
/// path in (library, CLI, API) holds targets to this one limit through [`validate_target`].
pub const MAX_TARGET_BYTES: usize = 1024 * 1024;

/// A job to insert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    #[serde(rename = "type")]
    pub job_type: String,
    pub target: serde_json::Value,
    /// Attempts before the job ends `failed`. `None` takes its type's policy (the registry's
    /// `max_attempts`, applied by [`crate::Client`]), or [`DEFAULT_MAX_ATTEMPTS`].
    #[serde(default)]
    pub max_attempts: Option<i32>,
    /// `None` runs it now; a later time schedules it.
    pub run_at: Option<DateTime<Utc>>,
    /// Higher runs first (within its queue).
    pub priority: i16,
    /// The named queue; `None` takes its type's (`queue` in `[types.X]`, published to
    /// `job_types`), else [`DEFAULT_QUEUE`].
    #[serde(default)]
    pub queue: Option<String>,
    /// At most one open job (pending, or running in lease mode) per type and key: inserting
    /// a duplicate returns the open job instead. `None` takes the key its type derives from
    /// the target (`unique` fields), if any. 1 to [`MAX_UNIQUE_KEY_BYTES`] bytes.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// With a key, also a duplicate of any job of the type with that key created within this
    /// window, finished or not. `None` takes the type's `unique_for`, if any.
    #[serde(default, skip)]
    pub unique_for: Option<std::time::Duration>,
    /// The W3C `traceparent` of the trace the job belongs to (see [`validate_traceparent`]).
    /// `None` takes the current span's trace when the `otel` feature is built in (see
    /// [`crate::Client`]), else leaves the job untraced.
    #[serde(default)]
    pub traceparent: Option<String>,
}

impl NewJob {
    pub fn new(job_type: impl Into<String>, target: serde_json::Value) -> Self {
        NewJob {
            job_type: job_type.into(),
            target,
            max_attempts: None,
            run_at: None,
            priority: 0,
            queue: None,
            unique_key: None,
            unique_for: None,
            traceparent: None,
        }
    }

    /// Puts the job in a named queue, whatever its type's policy says.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// Makes the job unique by `key` within its type (see [`NewJob::unique_key`]).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Extends uniqueness to jobs created within `window` (see [`NewJob::unique_for`]).
    pub fn unique_for(mut self, window: std::time::Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// The attempts this job gets: its own, or the default when neither it nor its type's
    /// policy said.
    pub fn attempts_allowed(&self) -> i32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }

    /// Puts the job in the trace a W3C `traceparent` names.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Checks what the database would otherwise reject less clearly.
    pub fn validate(&self) -> Result<(), String> {
        validate_type(&self.job_type)?;
        validate_target(&self.target)?;
        if let Some(q) = &self.queue {
            validate_queue(q)?;
        }
        validate_max_attempts(self.attempts_allowed())?;
        if let Some(k) = &self.unique_key {
            validate_unique_key(k)?;
        }
        if let Some(w) = self.unique_for {
            validate_unique_for(w)?;
        }
        if let Some(tp) = &self.traceparent {
            validate_traceparent(tp)?;
        }
        Ok(())
    }
}

/// A queue name: ASCII letters, digits, `_`, `-` and `.`, at most [`MAX_QUEUE_LEN`] bytes. It
/// becomes part of a Redis key and a `--queues` entry, so `=`, `,`, `:` and spaces are out.
pub fn validate_queue(q: &str) -> Result<(), String> {
    if q.is_empty() {
        return Err("queue name must not be empty".into());
    }
    if q.len() > MAX_QUEUE_LEN {
        return Err(format!("queue name is longer than {MAX_QUEUE_LEN} bytes"));
    }
    if !q
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "queue name {q:?} may only contain ASCII letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

/// Longest unique key: keys name things (an invoice, a day), they are not payloads; they are
/// indexed, and an index entry must stay well under PostgreSQL's limit of about 2.7 kB.
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;
/// Longest uniqueness window: beyond a year it is a permanent ban, which a window is not.
pub const MAX_UNIQUE_FOR: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// A unique key is non-empty text of at most [`MAX_UNIQUE_KEY_BYTES`] bytes without NUL.
pub fn validate_unique_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("unique_key must not be empty (leave it out for no key)".into());
    }
    if k.len() > MAX_UNIQUE_KEY_BYTES {
        return Err(format!(
            "unique_key is {} bytes; at most {MAX_UNIQUE_KEY_BYTES} (a key names a thing, hash a longer one)",
            k.len()
        ));
    }
    if k.contains('\0') {
        return Err("unique_key contains the NUL character; the database cannot store it".into());
    }
    Ok(())
}

/// A uniqueness window is positive and at most [`MAX_UNIQUE_FOR`].
pub fn validate_unique_for(w: std::time::Duration) -> Result<(), String> {
    if w.is_zero() || w > MAX_UNIQUE_FOR {
        return Err(format!(
            "unique_for must be between 1 ms and {} days",
            MAX_UNIQUE_FOR.as_secs() / 86400
        ));
    }
    Ok(())
}

/// A W3C trace context `traceparent` (version `00`), the one form every store keeps:
/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, lowercase, neither id all zeros.
/// The stores' CHECK constraints hold the column to the same rule.
pub fn validate_traceparent(tp: &str) -> Result<(), String> {
    let shown: String = tp.chars().take(64).collect();
    let bad = |why: &str| {
        Err(format!(
            "traceparent {shown:?} is not a W3C trace context ({why}): expected \
             00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, lowercase"
        ))
    };
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match parts[..] {
        [version, trace, span, flags]
            if version == "00"
                && trace.len() == 32
                && span.len() == 16
                && flags.len() == 2
                && [trace, span, flags].iter().all(|p| hex(p)) =>
        {
            if trace.bytes().all(|b| b == b'0') {
                bad("its trace id is all zeros")
            } else if span.bytes().all(|b| b == b'0') {
                bad("its span id is all zeros")
            } else {
                Ok(())
            }
        }
        _ => bad("wrong shape"),
    }
}

/// What an insert did with one job: inserted it, or found the open (or windowed) job with
/// the same type and unique key (in whatever queue) and returned that one's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inserted {
    pub id: Uuid,
    /// `true`: nothing was inserted; `id` is the existing job's.
    pub duplicate: bool,
    /// The named queue the job is in (a duplicate's: the existing job's).
    pub queue: String,
}

/// `max_attempts` within what a retry policy can mean.
pub fn validate_max_attempts(n: i32) -> Result<(), String> {
    if !(1..=MAX_MAX_ATTEMPTS).contains(&n) {
        return Err(format!(
            "max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}, got {n}"
        ));
    }
    Ok(())
}

/// A job type is a short printable name: it keys processors, metrics labels and reports.
pub fn validate_type(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("job type must not be empty".into());
    }
    if t.len() > MAX_TYPE_LEN {
        return Err(format!("job type is longer than {MAX_TYPE_LEN} bytes"));
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(format!(
            "job type {t:?} may only contain ASCII letters, digits, '_', '-', '.' and ':'"
        ));
    }
    Ok(())
}

/// A target every store can keep: no NUL character in any string or key (PostgreSQL's jsonb
/// cannot store one, and would refuse it with a less helpful error), and at most
/// [`MAX_TARGET_BYTES`] as compact JSON.
pub fn validate_target(target: &serde_json::Value) -> Result<(), String> {
    if let Some(mut path) = nul_at(target) {
        path.reverse();
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" at /{}", path.join("/"))
        };
        return Err(format!(
            "target contains the NUL character (\\u0000){at}; the database cannot store it"
        ));
    }
    let mut size = SizeLimit {
        left: MAX_TARGET_BYTES,
    };
    if serde_json::to_writer(&mut size, target).is_err() {
        return Err(format!(
            "target is larger than {MAX_TARGET_BYTES} bytes as JSON: pass a reference to the \
             data (a key, a URL), not the data itself"
        ));
    }
    Ok(())
}

/// The path to the first NUL, innermost step first; `None` when there is none. The path is
/// only built on the way back from a find, so a clean target costs no allocation.
fn nul_at(v: &serde_json::Value) -> Option<Vec<String>> {
    match v {
        serde_json::Value::String(s) => s.contains('\0').then(Vec::new),
        serde_json::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            let mut path = nul_at(v)?;
            path.push(i.to_string());
            Some(path)
        }),
        serde_json::Value::Object(o) => o.iter().find_map(|(k, v)| {
            let mut path = if k.contains('\0') {
                Vec::new()
            } else {
                nul_at(v)?
            };
            // Shown escaped: the path is for a person to read.
            path.push(k.replace('\0', "\\u0000"));
            Some(path)
        }),
        _ => None,
    }
}

/// A writer that counts bytes and fails once they exceed the limit, so that measuring a huge
/// target stops early and allocates nothing.
struct SizeLimit {
    left: usize,
}

impl std::io::Write for SizeLimit {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.left = self
            .left
            .checked_sub(buf.len())
            .ok_or_else(|| std::io::Error::other("over the limit"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A job ID as the queue carries it, with the priority it is popped by and the named queue
/// it goes into.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Due {
    pub id: Uuid,
    pub priority: i16,
    pub queue: String,
}

impl Due {
    /// An ID for the `default` queue.
    pub fn new(id: Uuid, priority: i16) -> Self {
        Due {
            id,
            priority,
            queue: DEFAULT_QUEUE.to_string(),
        }
    }
}

/// A named group of jobs submitted together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub job_type: String,
    pub total: i64,
    pub created_at: DateTime<Utc>,
}

/// What a submission returns: the batch (if any) and the new IDs in target order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub batch_id: Option<Uuid>,
    pub ids: Vec<Uuid>,
    /// The named queue the jobs went into.
    pub queue: String,
    /// How many targets duplicated an open job (or one within the window) of the same unique
    /// key, earlier in the batch or already stored: their `ids` are those jobs', and they are
    /// not part of the batch.
    #[serde(default)]
    pub duplicates: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_rejects_unknown() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        assert!("runnin".parse::<JobStatus>().is_err());
        assert!("".parse::<JobStatus>().is_err());
    }

    #[test]
    fn type_names_are_validated() {
        assert!(validate_type("recalc_invoice").is_ok());
        assert!(validate_type("").is_err());
        assert!(validate_type("a b").is_err());
        assert!(validate_type("x'; DROP TABLE jobs;--").is_err());
        assert!(validate_type(&"a".repeat(MAX_TYPE_LEN + 1)).is_err());
    }

    #[test]
    fn queue_names_are_validated() {
        assert!(validate_queue("default").is_ok());
        assert!(validate_queue("media-2.eu_west").is_ok());
        assert!(validate_queue(&"q".repeat(MAX_QUEUE_LEN)).is_ok());
        for bad in [
            "",
            "a b",
            "a=4",
            "a,b",
            "a:b",
            "{q}",
            "x'; DROP TABLE jobs;--",
            "\u{0}",
            "é",
        ] {
            assert!(validate_queue(bad).is_err(), "accepted {bad:?}");
        }
        assert!(validate_queue(&"q".repeat(MAX_QUEUE_LEN + 1)).is_err());
        assert!(NewJob::new("noop", serde_json::json!({}))
            .queue("a b")
            .validate()
            .is_err());
    }

    #[test]
    fn targets_are_held_to_one_size_and_no_nul() {
        let string_of = |n: usize| serde_json::Value::String("x".repeat(n - 2));
        assert!(validate_target(&string_of(MAX_TARGET_BYTES)).is_ok());
        let e = validate_target(&string_of(MAX_TARGET_BYTES + 1)).unwrap_err();
        assert!(e.contains(&MAX_TARGET_BYTES.to_string()), "{e}");
        assert!(validate_target(&serde_json::json!(null)).is_ok());
        assert!(validate_target(&serde_json::json!("")).is_ok());
        // A backslash followed by `u0000` is ordinary text, not a NUL.
        assert!(validate_target(&serde_json::json!("\\u0000")).is_ok());
        let e = validate_target(&serde_json::json!({"a": [1, "x\u{0}"]})).unwrap_err();
        assert!(e.contains("NUL") && e.contains("/a/1"), "{e}");
        let e = validate_target(&serde_json::json!({"k\u{0}": 1})).unwrap_err();
        assert!(e.contains("/k\\u0000"), "{e}");
        let e = validate_target(&serde_json::json!("\u{0}")).unwrap_err();
        assert!(e.contains("NUL") && !e.contains(" at "), "{e}");
        let job = NewJob::new("noop", string_of(MAX_TARGET_BYTES + 1));
        assert!(job.validate().is_err(), "the model refuses it too");
    }

    #[test]
    fn traceparents_are_w3c_version_00_only() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(validate_traceparent(ok).is_ok());
        assert!(validate_traceparent(&ok.replace("-01", "-00")).is_ok());
        for bad in [
            "",
            "00",
            "garbage",
            &ok.to_uppercase(),
            &ok.replacen("00-", "01-", 1),
            &ok.replace("-01", "-01-extra"),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'; DROP TABLE jobs;--",
        ] {
            let e = validate_traceparent(bad).unwrap_err();
            assert!(e.contains("W3C"), "{bad:?}: {e}");
        }
        // A huge value is refused, and the message quotes only its start.
        let huge = format!("00-{}", "a".repeat(1 << 20));
        let e = validate_traceparent(&huge).unwrap_err();
        assert!(e.len() < 400, "{}", e.len());
        let job = NewJob::new("noop", serde_json::json!({})).traceparent("nope");
        assert!(job.validate().is_err(), "the model refuses it too");
    }
}
