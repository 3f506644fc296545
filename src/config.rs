//! Configuration: flags, each with an environment variable, over an optional TOML file, over
//! defaults. Unknown keys in the file are an error: a typo must not silently do nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::job::JobStatus;
use crate::maintenance::retention::{parse_keep, Retention};
use crate::maintenance::schedule::CatchUp;
use crate::maintenance::CronEntry;
use crate::processor::{
    CommandProcessor, Mode, Processor, Registry, SqlProcessor, TypeOptions, UniquePolicy,
};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://skiplock.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_SCHEMA: &str = "skiplock";
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Config files are a few kilobytes; refuse to parse something that is clearly not one.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The TOML file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// Prefix of Redis keys and channels (`skiplock` by default).
    pub redis_prefix: Option<String>,
    pub concurrency: Option<usize>,
    /// `"auto"` (the default), `"auto:MAX"`, or a fixed number of jobs per transaction.
    pub chunk_size: Option<ChunkSetting>,
    pub bind: Option<String>,
    pub schema: Option<String>,
    pub api_token: Option<String>,
    /// Processors keyed by job type.
    #[serde(default)]
    pub types: BTreeMap<String, TypeConfig>,
    /// How long finished jobs are kept (see [`RetentionConfig`]).
    pub retention: Option<RetentionConfig>,
    /// The named queues a node serves, each with its runners (`[queues]` `default = 16`).
    /// Signed, so that `-1` gets a clear error rather than a parse failure.
    pub queues: Option<BTreeMap<String, i64>>,
    /// How long pending jobs of a type no live node has a processor for wait before they fail
    /// (`90s`, `15m`, `36h`, `7d` or `never`, the default).
    pub fail_unrunnable_after: Option<String>,
    /// Scheduled jobs keyed by entry name (see [`CronConfig`]).
    #[serde(default)]
    pub cron: BTreeMap<String, CronConfig>,
}

/// One `[cron.NAME]` table: a job of `type` with `target` at every tick of `schedule`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronConfig {
    /// Five fields (minute hour day month weekday), six (seconds first), or `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub schedule: String,
    #[serde(rename = "type")]
    pub job_type: String,
    /// The job's target [default: `{}`].
    pub target: Option<toml::Value>,
    /// IANA time zone the schedule is read in [default: UTC].
    pub timezone: Option<String>,
    /// `none`, `last` or `all`: what to do with ticks missed while no node ran [default: last].
    pub catch_up: Option<String>,
}

/// The `[retention]` table: a duration per finished status (`90s`, `15m`, `36h`, `7d` or
/// `never`; 7 days when unset), and `[retention.types.NAME]` tables overriding them for one
/// type. Any other key (a `running` status, say) is an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub succeeded: Option<String>,
    pub failed: Option<String>,
    pub cancelled: Option<String>,
    #[serde(default)]
    pub types: BTreeMap<String, RetentionByStatus>,
}

/// One `[retention.types.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionByStatus {
    pub succeeded: Option<String>,
    pub failed: Option<String>,
    pub cancelled: Option<String>,
}

impl RetentionByStatus {
    fn entries(&self) -> [(JobStatus, &Option<String>); 3] {
        [
            (JobStatus::Succeeded, &self.succeeded),
            (JobStatus::Failed, &self.failed),
            (JobStatus::Cancelled, &self.cancelled),
        ]
    }
}

/// One `[types.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeConfig {
    /// Statements run in order in the job's transaction: `$1` job id, `$2` target (jsonb).
    pub sql: Option<Vec<String>>,
    /// POST the target as JSON to this URL; any 2xx is success.
    pub http: Option<HttpConfig>,
    /// Run this program (argv, no shell) with the target on stdin; exit 0 is success.
    pub command: Option<Vec<String>>,
    pub max_attempts: Option<i32>,
    pub timeout_ms: Option<u64>,
    pub backoff_ms: Option<u64>,
    /// `tx` or `lease`; default `tx` for `sql`, `lease` for `http` and `command`.
    pub mode: Option<Mode>,
    /// The named queue the type's jobs go to when they name none; default `default`.
    pub queue: Option<String>,
    /// Target fields the jobs' unique key is made of (see [`UniquePolicy`]).
    pub unique: Option<Vec<String>>,
    /// How long a key also blocks finished jobs: `90s`, `15m`, `1h`, `7d`.
    pub unique_for: Option<String>,
}

/// `http = { url = "…" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
}

#[cfg(feature = "http")]
fn http_processor(url: &str) -> Result<Box<dyn Processor>> {
    Ok(Box::new(crate::processor::HttpProcessor::new(url)?))
}

/// A build without the `http` feature refuses `http` types at start-up, before any job runs.
#[cfg(not(feature = "http"))]
fn http_processor(_url: &str) -> Result<Box<dyn Processor>> {
    Err(Error::Config(
        "`http` processors need skiplock built with the `http` feature".into(),
    ))
}

impl TypeConfig {
    /// The one processor this table declares, if any. Declaring two is an error: which one
    /// runs must never depend on an order the file does not show.
    pub fn processor(&self) -> Result<Option<Box<dyn Processor>>> {
        let declared = [
            self.sql.is_some(),
            self.http.is_some(),
            self.command.is_some(),
        ];
        if declared.iter().filter(|d| **d).count() > 1 {
            return Err(Error::Config(
                "give exactly one of `sql`, `http` and `command`".into(),
            ));
        }
        Ok(if let Some(stmts) = &self.sql {
            Some(Box::new(SqlProcessor::new(stmts.clone())?))
        } else if let Some(h) = &self.http {
            Some(http_processor(&h.url)?)
        } else if let Some(argv) = &self.command {
            Some(Box::new(CommandProcessor::new(argv.clone())?))
        } else {
            None
        })
    }

    /// The table's uniqueness, if it sets any.
    pub fn unique_policy(&self) -> Result<Option<UniquePolicy>> {
        if self.unique.is_none() && self.unique_for.is_none() {
            return Ok(None);
        }
        let window = match &self.unique_for {
            None => None,
            Some(v) => Some(parse_window(v).map_err(Error::Config)?),
        };
        let p = UniquePolicy {
            fields: self.unique.clone().unwrap_or_default(),
            window,
        };
        p.validate()?;
        Ok(Some(p))
    }

    /// The table's options over `d`, the options the type has without it (a built-in's, or
    /// the defaults for its processor kind).
    pub fn options_over(&self, d: TypeOptions) -> TypeOptions {
        TypeOptions {
            mode: self.mode.unwrap_or(d.mode),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            timeout: self
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.timeout),
            backoff: self
                .backoff_ms
                .map(Duration::from_millis)
                .unwrap_or(d.backoff),
        }
    }
}

impl FileConfig {
    /// Reads and parses a config file; every failure names the file.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(Error::Config(format!(
                "{} is {} bytes; a config file must be under 1 MiB",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_string() + &span_hint(text, e.span()))
    }

    /// The file's `[retention]` over the default (7 days for every finished status).
    pub fn retention(&self) -> Result<Retention> {
        let mut r = Retention::default();
        let Some(c) = &self.retention else {
            return Ok(r);
        };
        let err = |at: String, e: String| Error::Config(format!("[retention] {at}: {e}"));
        let top = RetentionByStatus {
            succeeded: c.succeeded.clone(),
            failed: c.failed.clone(),
            cancelled: c.cancelled.clone(),
        };
        for (status, v) in top.entries() {
            if let Some(v) = v {
                let keep = parse_keep(v).map_err(|e| err(status.to_string(), e))?;
                r.set(status, keep)
                    .map_err(|e| err(status.to_string(), e))?;
            }
        }
        for (t, by) in &c.types {
            for (status, v) in by.entries() {
                if let Some(v) = v {
                    let at = format!("types.{t}.{status}");
                    let keep = parse_keep(v).map_err(|e| err(at.clone(), e))?;
                    r.set_type(t, status, keep).map_err(|e| err(at, e))?;
                }
            }
        }
        Ok(r)
    }

    /// The file's cron entries, checked against the node's processors: a malformed schedule,
    /// an unknown zone or catch-up policy, or a type with no processor is refused with the
    /// entry's name and why.
    pub fn cron_entries(&self, registry: &Registry) -> Result<Vec<CronEntry>> {
        let mut out = Vec::new();
        for (name, c) in &self.cron {
            let bad = |e: String| Error::Config(format!("[cron.{name}]: {e}"));
            let target = match &c.target {
                None => serde_json::json!({}),
                Some(t) => serde_json::to_value(t).map_err(|e| bad(format!("target: {e}")))?,
            };
            let zone = c.timezone.as_deref().unwrap_or("UTC");
            let mut entry = CronEntry::new(name, &c.schedule, zone, &c.job_type, target)?;
            if let Some(cu) = &c.catch_up {
                entry = entry.catch_up(cu.parse::<CatchUp>().map_err(bad)?);
            }
            if registry.get(&c.job_type).is_none() {
                return Err(bad(format!(
                    "type {:?} has no processor: declare [types.{}] or use a built-in (noop, sleep, fail)",
                    c.job_type, c.job_type
                )));
            }
            out.push(entry);
        }
        crate::maintenance::cron::validate_entries(&out, &registry.policy())?;
        Ok(out)
    }

    /// The built-in processors plus the file's types. A file type may tune a built-in's
    /// options; declaring a processor under a built-in's name is an error.
    pub fn registry(&self) -> Result<Registry> {
        let mut reg = Registry::with_builtins();
        for (name, t) in &self.types {
            let base = match reg.get(name) {
                Some(r) => r.options,
                None if t.http.is_some() || t.command.is_some() => TypeOptions {
                    mode: Mode::Lease,
                    ..TypeOptions::default()
                },
                None => TypeOptions::default(),
            };
            let opts = t.options_over(base);
            let ctx = |e: Error| Error::Config(format!("[types.{name}]: {}", strip(e)));
            let unique = t.unique_policy().map_err(ctx)?;
            match t.processor().map_err(ctx)? {
                Some(p) => reg.register_arc(name, p.into(), opts).map_err(ctx)?,
                None if reg.get(name).is_some() => reg.set_options(name, opts).map_err(ctx)?,
                None => {
                    return Err(Error::Config(format!(
                        "[types.{name}]: no processor: give `sql = [...]`, `http = {{ url = \"...\" }}` or `command = [...]`"
                    )))
                }
            }
            if let Some(q) = &t.queue {
                reg.set_queue(name, q)
                    .map_err(|e| Error::Config(format!("[types.{name}] queue: {}", strip(e))))?;
            }
            if let Some(u) = unique {
                reg.set_unique(name, u).map_err(ctx)?;
            }
        }
        Ok(reg)
    }

    /// The file's `[queues]`, checked as `--queues` is; `None` when the file has none.
    pub fn queues(&self) -> Result<Option<Vec<(String, usize)>>> {
        let Some(q) = &self.queues else {
            return Ok(None);
        };
        let entries = q
            .iter()
            .map(|(name, n)| (name.clone(), n.to_string()))
            .collect::<Vec<_>>();
        check_queues(entries)
            .map(Some)
            .map_err(|e| Error::Config(format!("[queues]: {e}")))
    }
}

/// Most named queues one node serves; each is at least one runner and one refill task.
pub const MAX_QUEUES: usize = 64;

/// Parses `--queues`: `NAME=CONCURRENCY` entries separated by commas (`default=16,media=4`).
pub fn parse_queues(spec: &str) -> std::result::Result<Vec<(String, usize)>, String> {
    if spec.trim().is_empty() {
        return Err("no queues given: use NAME=CONCURRENCY[,NAME=CONCURRENCY…]".into());
    }
    let mut entries = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let Some((name, n)) = part.split_once('=') else {
            let shown: String = part.chars().take(40).collect();
            return Err(format!(
                "{shown:?}: expected NAME=CONCURRENCY, such as default=16"
            ));
        };
        entries.push((name.trim().to_string(), n.trim().to_string()));
    }
    check_queues(entries)
}

/// Checks queue entries (name, concurrency as written): valid names, each once, each with a
/// concurrency from 1 to [`crate::executor::MAX_CONCURRENCY`], at most [`MAX_QUEUES`].
fn check_queues(
    entries: Vec<(String, String)>,
) -> std::result::Result<Vec<(String, usize)>, String> {
    use crate::executor::MAX_CONCURRENCY;
    if entries.is_empty() {
        return Err("no queues given: a node must serve at least one".into());
    }
    if entries.len() > MAX_QUEUES {
        return Err(format!(
            "{} queues; a node serves at most {MAX_QUEUES}",
            entries.len()
        ));
    }
    let mut out: Vec<(String, usize)> = Vec::with_capacity(entries.len());
    for (name, n) in entries {
        let shown: String = name.chars().take(70).collect();
        crate::job::validate_queue(&name).map_err(|e| format!("{shown:?}: {e}"))?;
        if out.iter().any(|(q, _)| *q == name) {
            return Err(format!("queue {name:?} is given twice"));
        }
        let n: usize = match n.parse::<i64>() {
            Ok(v) if (1..=MAX_CONCURRENCY as i64).contains(&v) => v as usize,
            Ok(v) => {
                return Err(format!(
                    "queue {name:?}: concurrency must be between 1 and {MAX_CONCURRENCY}, got {v}"
                ))
            }
            Err(_) => {
                let shown: String = n.chars().take(40).collect();
                return Err(format!(
                    "queue {name:?}: concurrency {shown:?} is not a whole number (1 to {MAX_CONCURRENCY})"
                ));
            }
        };
        out.push((name, n));
    }
    Ok(out)
}

/// A duration such as `90s`, `15m`, `1h` or `7d` (the retention syntax, without `never`).
pub fn parse_window(v: &str) -> Result<Duration, String> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.chars().all(|c| c == '0') {
        return Err(format!(
            "unique_for {v:?}: give a positive duration such as 90s, 15m, 1h or 7d"
        ));
    }
    match parse_keep(v) {
        Ok(crate::maintenance::Keep::For(d)) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!(
            "unique_for {v:?}: give a positive duration such as 90s, 15m, 1h or 7d"
        )),
        Err(e) => Err(format!(
            "unique_for: {}",
            e.replace("retention", "duration")
        )),
    }
}

fn strip(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        other => other.to_string(),
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(s) => {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = FileConfig::parse("concurency = 4").unwrap_err();
        assert!(e.contains("concurency"), "{e}");
        let e = FileConfig::parse("[types.x]\nsql = ['select 1']\nretries = 2").unwrap_err();
        assert!(e.contains("retries"), "{e}");
        let e = FileConfig::parse("[types.x]\nhttp = { url = 'http://a/', method = 'GET' }")
            .unwrap_err();
        assert!(e.contains("method"), "{e}");
    }

    #[test]
    fn wrong_types_and_garbage_are_errors() {
        assert!(FileConfig::parse("concurrency = 'many'").is_err());
        assert!(FileConfig::parse("[[[").is_err());
        assert!(FileConfig::parse("\u{0}\u{1}").is_err());
        assert!(FileConfig::parse("").is_ok());
    }

    #[test]
    fn retention_reads_from_the_file_and_refuses_nonsense() {
        use crate::maintenance::Keep;
        let c = FileConfig::parse(
            "[retention]\nfailed = '30d'\ncancelled = 'never'\n\
             [retention.types.thumbs]\nsucceeded = '1h'",
        )
        .unwrap();
        let r = c.retention().unwrap();
        let h = |n: u64| Keep::For(Duration::from_secs(n * 3600));
        assert_eq!(r.keep("thumbs", JobStatus::Succeeded), h(1));
        assert_eq!(r.keep("other", JobStatus::Succeeded), h(7 * 24));
        assert_eq!(r.keep("other", JobStatus::Failed), h(30 * 24));
        assert_eq!(r.keep("thumbs", JobStatus::Cancelled), Keep::Forever);
        assert_eq!(
            FileConfig::parse("").unwrap().retention().unwrap(),
            Retention::default()
        );
        // Unknown statuses and keys are refused when the file is parsed.
        for bad in [
            "[retention]\nrunning = '1d'",
            "[retention]\npending = '1d'",
            "[retention]\nsucceeded = 7",
            "[retention]\nsucceeded = ['7d']",
            "[retention.types.x]\nrunning = '1d'",
            "[retention.types.x]\nsuceeded = '1d'",
            "retention = '7d'",
        ] {
            assert!(FileConfig::parse(bad).is_err(), "parsed: {bad}");
        }
        // Bad values and type names are refused when the policy is built.
        for (bad, says) in [
            ("[retention]\nsucceeded = '-1d'", "negative"),
            ("[retention]\nfailed = ''", "whole number"),
            ("[retention]\nfailed = 'soon'", "whole number"),
            ("[retention]\ncancelled = '99999999999d'", "100 years"),
            ("[retention.types.'bad type']\nfailed = '1d'", "bad type"),
            (
                "[retention.types.x]\nfailed = '1d; DROP TABLE jobs'",
                "types.x.failed",
            ),
        ] {
            let e = FileConfig::parse(bad).unwrap().retention().unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn types_build_a_registry() {
        let c = FileConfig::parse(
            "[types.recalc]\nsql = ['select $1, $2']\nmax_attempts = 5\n[types.noop]\ntimeout_ms = 5",
        )
        .unwrap();
        let r = c.registry().unwrap();
        assert_eq!(r.options("recalc").max_attempts, 5);
        assert_eq!(r.options("noop").timeout, Duration::from_millis(5));
    }

    #[test]
    fn queues_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_queues("default=16, media=4").unwrap(),
            vec![("default".to_string(), 16), ("media".to_string(), 4)]
        );
        for (bad, says) in [
            ("", "no queues"),
            ("  ", "no queues"),
            ("default=", "not a whole number"),
            ("=4", "must not be empty"),
            ("a=0", "between 1 and"),
            ("a=-1", "between 1 and"),
            ("a=1,a=2", "twice"),
            ("a", "NAME=CONCURRENCY"),
            ("a=1,", "NAME=CONCURRENCY"),
            ("a=1.5", "whole number"),
            ("a=99999999999999999999999", "whole number"),
            ("a=1025", "between 1 and"),
            ("a b=1", "may only contain"),
            ("x';DROP TABLE jobs;--=1", "may only contain"),
        ] {
            let e = parse_queues(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let huge = format!("{}=1", "q".repeat(10_000));
        assert!(
            parse_queues(&huge).unwrap_err().len() < 300,
            "the error stays short"
        );
        let many: Vec<String> = (0..=MAX_QUEUES).map(|i| format!("q{i}=1")).collect();
        assert!(parse_queues(&many.join(","))
            .unwrap_err()
            .contains("at most"));
        let c = FileConfig::parse("[queues]\ndefault = 2\nmedia = 1").unwrap();
        assert_eq!(c.queues().unwrap().unwrap().len(), 2);
        for bad in [
            "[queues]\ndefault = 0",
            "[queues]\ndefault = -1",
            "[queues]\n'a b' = 1",
            "[queues]",
        ] {
            let c = FileConfig::parse(bad).unwrap();
            assert!(c.queues().is_err(), "accepted {bad:?}");
        }
        assert!(FileConfig::parse("[queues]\ndefault = 'many'").is_err());
        assert!(FileConfig::parse("queues = 4").is_err());
    }

    #[test]
    fn a_type_names_its_queue() {
        let c = FileConfig::parse("[types.resize]\ncommand = ['true']\nqueue = 'media'").unwrap();
        let r = c.registry().unwrap();
        assert_eq!(r.queue("resize"), "media");
        assert_eq!(r.queue("noop"), "default");
        assert_eq!(r.policy().queue("resize"), Some("media"));
        for bad in ["''", "'a b'", "'a=1'", "'x;DROP'"] {
            let c = FileConfig::parse(&format!("[types.noop]\nqueue = {bad}")).unwrap();
            let e = c.registry().err().expect("refused").to_string();
            assert!(e.contains("queue"), "{bad}: {e}");
        }
    }

    #[test]
    fn cron_entries_are_read_and_bad_ones_refused_by_name() {
        let c = FileConfig::parse(
            "[cron.nightly]\nschedule = '30 2 * * *'\ntype = 'noop'\ntarget = { report = 'sales', days = 1 }\n\
             timezone = 'Europe/Berlin'\ncatch_up = 'all'\n[cron.tick]\nschedule = '@hourly'\ntype = 'noop'",
        )
        .unwrap();
        let reg = c.registry().unwrap();
        let e = c.cron_entries(&reg).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "nightly");
        assert_eq!(
            e[0].target,
            serde_json::json!({"report": "sales", "days": 1})
        );
        assert_eq!(e[0].catch_up, CatchUp::All);
        assert_eq!(e[1].catch_up, CatchUp::Last);
        assert_eq!(e[1].schedule.zone().name(), "UTC");

        for (bad, says) in [
            (
                "[cron.a]\nschedule = '* * *'\ntype = 'noop'",
                "[cron.a]: schedule",
            ),
            (
                "[cron.b]\nschedule = '99 * * * *'\ntype = 'noop'",
                "[cron.b]",
            ),
            (
                "[cron.c]\nschedule = '@daily'\ntype = 'noop'\ntimezone = 'Moon/Base'",
                "[cron.c]: unknown time zone",
            ),
            (
                "[cron.d]\nschedule = '@daily'\ntype = 'noop'\ncatch_up = 'some'",
                "[cron.d]: unknown catch_up",
            ),
            (
                "[cron.e]\nschedule = '@daily'\ntype = 'nobody'",
                "[cron.e]: type \"nobody\" has no processor",
            ),
            (
                "[cron.f]\nschedule = '@daily'\ntype = 'bad type'",
                "[cron.f]: type",
            ),
            (
                "[cron.'bad name']\nschedule = '@daily'\ntype = 'noop'",
                "bad name",
            ),
            (
                "[types.noop]\nunique = ['invoice']\n[cron.g]\nschedule = '@daily'\ntype = 'noop'",
                "[cron.g]: the target has no field \"invoice\"",
            ),
        ] {
            let c = FileConfig::parse(bad).unwrap();
            let e = c.registry().and_then(|r| c.cron_entries(&r)).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        // A missing type or schedule, or an unknown key, is refused when the file is parsed.
        for bad in [
            "[cron.a]\nschedule = '@daily'",
            "[cron.a]\ntype = 'noop'",
            "[cron.a]\nschedule = '@daily'\ntype = 'noop'\nzone = 'UTC'",
            "[cron.a]\nschedule = 5\ntype = 'noop'",
        ] {
            let e = FileConfig::parse(bad).unwrap_err();
            assert!(
                e.contains("type")
                    || e.contains("schedule")
                    || e.contains("zone")
                    || e.contains("invalid"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn unique_options_build_a_policy_and_bad_ones_are_refused() {
        let c = FileConfig::parse("[types.noop]\nunique = ['invoice']\nunique_for = '1h'").unwrap();
        let p = c.registry().unwrap().policy();
        let u = p.unique("noop").unwrap();
        assert_eq!(u.fields, ["invoice"]);
        assert_eq!(u.window, Some(Duration::from_secs(3600)));
        for (bad, says) in [
            ("[types.noop]\nunique = []", "at least one"),
            ("[types.noop]\nunique = ['']", "field"),
            ("[types.noop]\nunique = ['a', 'a']", "twice"),
            (
                "[types.noop]\nunique = ['a']\nunique_for = 'never'",
                "positive",
            ),
            (
                "[types.noop]\nunique = ['a']\nunique_for = '0s'",
                "positive",
            ),
            (
                "[types.noop]\nunique = ['a']\nunique_for = 'soon'",
                "unique_for",
            ),
            (
                "[types.noop]\nunique = ['a']\nunique_for = '9999d'",
                "unique_for",
            ),
        ] {
            let e = FileConfig::parse(bad).unwrap().registry().err().unwrap();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        assert!(FileConfig::parse("[types.noop]\nunique = 'invoice'").is_err());
    }

    #[test]
    fn bad_types_are_refused() {
        for bad in [
            "[types.x]\nmax_attempts = 2",
            "[types.x]\nsql = []",
            "[types.x]\nsql = ['  ']",
            "[types.x]\nsql = ['select 1']\nmax_attempts = 0",
            "[types.x]\nsql = ['select 1']\ntimeout_ms = 0",
            "[types.'bad name']\nsql = ['select 1']",
            "[types.noop]\nsql = ['select 1']",
            "[types.x]\nsql = ['select 1']\ncommand = ['true']",
            "[types.x]\nhttp = { url = 'http://127.0.0.1:1/' }\ncommand = ['true']",
            "[types.x]\nhttp = { url = 'nope' }",
            "[types.x]\ncommand = []",
        ] {
            let c = FileConfig::parse(bad).unwrap();
            assert!(c.registry().is_err(), "accepted: {bad}");
        }
    }
}

/// `--chunk-size` and the config file's `chunk_size`: `auto` (adaptive, up to
/// [`crate::executor::DEFAULT_MAX_CHUNK`]), `auto:MAX`, or a fixed number of jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSetting {
    Auto { max: usize },
    Fixed(usize),
}

impl Default for ChunkSetting {
    fn default() -> Self {
        ChunkSetting::Auto {
            max: crate::executor::DEFAULT_MAX_CHUNK,
        }
    }
}

impl ChunkSetting {
    /// Applies it to an executor's configuration (checked there, by `validate`).
    pub fn apply(self, executor: &mut crate::executor::ExecutorConfig) {
        let (size, adaptive) = match self {
            ChunkSetting::Auto { max } => (max, true),
            ChunkSetting::Fixed(n) => (n, false),
        };
        executor.chunk_size = size;
        executor.adaptive = adaptive;
    }
}

impl std::str::FromStr for ChunkSetting {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad =
            || format!("chunk size must be `auto`, `auto:MAX` or a number of jobs, got {s:?}");
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(ChunkSetting::default());
        }
        if let Some(max) = t.strip_prefix("auto:") {
            return max
                .trim()
                .parse()
                .map(|max| ChunkSetting::Auto { max })
                .map_err(|_| bad());
        }
        t.parse().map(ChunkSetting::Fixed).map_err(|_| bad())
    }
}

impl<'de> Deserialize<'de> for ChunkSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => usize::try_from(n).map(ChunkSetting::Fixed).map_err(|_| {
                serde::de::Error::custom(format!("chunk size must be between 1 and 10000, got {n}"))
            }),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}
