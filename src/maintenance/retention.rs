//! How long finished jobs are kept: per finished status (succeeded, failed, cancelled), with
//! per-type overrides. Given by flags, environment variables or the config file's
//! `[retention]` table; everything is parsed and checked at start-up, so a typo is an error
//! before any job runs, never a retention nobody asked for.
//!
//! A duration is a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `15m`, `36h`, `7d`),
//! at least one second and at most 100 years; `never` keeps jobs of that status for good.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use crate::job::{validate_type, JobStatus};
use crate::store::PruneRule;

/// Kept this long when nothing says otherwise, for every finished status.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest retention accepted: past it a number is a mistake, not a policy (and the
/// databases' interval arithmetic has limits of its own).
const MAX_SECS: u64 = 100 * 365 * 24 * 3600;

/// How long jobs of one status (of one type) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    For(Duration),
    Forever,
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Forever => f.write_str("never"),
            Keep::For(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

/// The statuses retention applies to: pending jobs are never pruned.
pub const FINISHED: [JobStatus; 3] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// The whole policy: a retention per finished status, and per-type overrides of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    by_status: HashMap<JobStatus, Keep>,
    by_type: BTreeMap<String, HashMap<JobStatus, Keep>>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::uniform(DEFAULT_RETENTION)
    }
}

impl Retention {
    /// Every finished status kept for `d`, whatever the type.
    pub fn uniform(d: Duration) -> Self {
        Retention {
            by_status: FINISHED.iter().map(|s| (*s, Keep::For(d))).collect(),
            by_type: BTreeMap::new(),
        }
    }

    /// Sets a status's retention for every type without an override.
    pub fn set(&mut self, status: JobStatus, keep: Keep) -> Result<(), String> {
        check_keep(status, keep)?;
        self.by_status.insert(status, keep);
        Ok(())
    }

    /// Sets a status's retention for one type.
    pub fn set_type(
        &mut self,
        job_type: &str,
        status: JobStatus,
        keep: Keep,
    ) -> Result<(), String> {
        validate_type(job_type)?;
        check_keep(status, keep)?;
        self.by_type
            .entry(job_type.to_string())
            .or_default()
            .insert(status, keep);
        Ok(())
    }

    /// How long a job of `job_type` that ended with `status` is kept.
    pub fn keep(&self, job_type: &str, status: JobStatus) -> Keep {
        self.by_type
            .get(job_type)
            .and_then(|m| m.get(&status))
            .or_else(|| self.by_status.get(&status))
            .copied()
            .unwrap_or(Keep::For(DEFAULT_RETENTION))
    }

    /// The types whose succeeded jobs are kept for zero time: their rows are deleted by the
    /// chunk that completes them.
    pub fn deleted_at_once(&self) -> crate::executor::DeleteSucceeded {
        let zero = |k: Option<&Keep>| k == Some(&Keep::For(Duration::ZERO));
        let all = zero(self.by_status.get(&JobStatus::Succeeded));
        let except = self
            .by_type
            .iter()
            .filter(|(_, m)| m.contains_key(&JobStatus::Succeeded))
            .filter(|(_, m)| zero(m.get(&JobStatus::Succeeded)) != all)
            .map(|(t, _)| t.clone())
            .collect();
        crate::executor::DeleteSucceeded { all, except }
    }

    /// The pruning rules: for each finished status, one per type with an override, then one
    /// for every other type. `never` yields no rule.
    pub fn rules(&self) -> Vec<PruneRule> {
        let mut rules = Vec::new();
        for status in FINISHED {
            let mut overridden = Vec::new();
            for (t, m) in &self.by_type {
                if let Some(keep) = m.get(&status) {
                    overridden.push(t.clone());
                    if let Keep::For(d) = keep {
                        rules.push(PruneRule {
                            status,
                            job_type: Some(t.clone()),
                            except_types: Vec::new(),
                            older_than: *d,
                        });
                    }
                }
            }
            if let Some(Keep::For(d)) = self.by_status.get(&status) {
                rules.push(PruneRule {
                    status,
                    job_type: None,
                    except_types: overridden,
                    older_than: *d,
                });
            }
        }
        rules
    }

    /// The shortest retention anywhere: a batch older than this with no jobs left is gone too.
    pub fn shortest(&self) -> Option<Duration> {
        self.by_status
            .values()
            .chain(self.by_type.values().flat_map(|m| m.values()))
            .filter_map(|k| match k {
                Keep::For(d) => Some(*d),
                Keep::Forever => None,
            })
            .min()
    }

    /// Applies one `TYPE:STATUS=DURATION` or `TYPE=DURATION` (every finished status of the
    /// type) override, as the `--retention-type` flag gives them.
    pub fn apply_override(&mut self, spec: &str) -> Result<(), String> {
        let bad = |why: &str| {
            format!(
                "--retention-type {spec:?}: {why}; expected TYPE=DURATION or TYPE:STATUS=DURATION, \
                 such as thumbnails:succeeded=1h"
            )
        };
        let (lhs, dur) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let keep = parse_keep(dur.trim()).map_err(|e| bad(&e))?;
        let (t, statuses) = match lhs.split_once(':') {
            Some((t, s)) => (t.trim(), vec![parse_status(s.trim()).map_err(|e| bad(&e))?]),
            None => (lhs.trim(), FINISHED.to_vec()),
        };
        for s in statuses {
            self.set_type(t, s, keep).map_err(|e| bad(&e))?;
        }
        Ok(())
    }
}

/// Zero is for succeeded jobs only (their rows are deleted as they complete): a failed or
/// cancelled job must be seen before it goes.
fn check_keep(status: JobStatus, keep: Keep) -> Result<(), String> {
    check_finished(status)?;
    if keep == Keep::For(Duration::ZERO) && status != JobStatus::Succeeded {
        return Err(format!(
            "invalid retention 0s for {status} jobs: at least 1s (a {status} job must be seen \
             before it goes); only succeeded jobs may be kept 0s, which deletes them as they \
             complete"
        ));
    }
    Ok(())
}

fn check_finished(status: JobStatus) -> Result<(), String> {
    if FINISHED.contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "retention applies to succeeded, failed and cancelled jobs, not {status}"
        ))
    }
}

/// A finished status by name.
pub fn parse_status(s: &str) -> Result<JobStatus, String> {
    let status: JobStatus = s
        .parse()
        .map_err(|_| format!("unknown status {s:?} (expected succeeded, failed or cancelled)"))?;
    check_finished(status)?;
    Ok(status)
}

/// `90s`, `15m`, `36h`, `7d` or `never`.
pub fn parse_keep(s: &str) -> Result<Keep, String> {
    if s == "never" {
        return Ok(Keep::Forever);
    }
    let shown: String = s.chars().take(40).collect();
    let usage = || {
        format!(
            "invalid retention {shown:?}: give a whole number and a unit (s, m, h or d), \
             such as 36h or 7d, or `never`"
        )
    };
    if s.starts_with('-') {
        return Err(format!(
            "invalid retention {shown:?}: it cannot be negative"
        ));
    }
    let unit = s.chars().last().ok_or_else(usage)?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(usage()),
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(usage());
    }
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .filter(|&n| n <= MAX_SECS)
        .ok_or_else(|| format!("invalid retention {shown:?}: at most 100 years (36500d)"))?;
    Ok(Keep::For(Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_for_succeeded_jobs_only_and_deletes_them_at_once() {
        let zero = Keep::For(Duration::ZERO);
        let mut r = Retention::default();
        assert_eq!(parse_keep("0s"), Ok(zero));
        assert!(r.deleted_at_once() == Default::default());
        assert!(r
            .set(JobStatus::Failed, zero)
            .unwrap_err()
            .contains("at least 1s"));
        assert!(r.set(JobStatus::Cancelled, zero).is_err());
        assert!(r.set_type("t", JobStatus::Failed, zero).is_err());
        r.set(JobStatus::Succeeded, zero).unwrap();
        r.set_type(
            "keep",
            JobStatus::Succeeded,
            Keep::For(Duration::from_secs(60)),
        )
        .unwrap();
        r.set_type(
            "also",
            JobStatus::Failed,
            Keep::For(Duration::from_secs(60)),
        )
        .unwrap();
        let d = r.deleted_at_once();
        assert!(d.deletes("anything") && d.deletes("also") && !d.deletes("keep"));
        let mut only = Retention::default();
        only.set_type("gone", JobStatus::Succeeded, zero).unwrap();
        let d = only.deleted_at_once();
        assert!(d.deletes("gone") && !d.deletes("other"));
    }

    #[test]
    fn durations_parse_or_say_why_not() {
        assert_eq!(parse_keep("90s"), Ok(Keep::For(Duration::from_secs(90))));
        assert_eq!(parse_keep("15m"), Ok(Keep::For(Duration::from_secs(900))));
        assert_eq!(parse_keep("7d"), Ok(Keep::For(DEFAULT_RETENTION)));
        assert_eq!(parse_keep("never"), Ok(Keep::Forever));
        for (bad, why) in [
            ("-1d", "negative"),
            ("", "whole number"),
            ("d", "whole number"),
            ("7", "whole number"),
            ("7w", "whole number"),
            ("1.5h", "whole number"),
            ("7 d", "whole number"),
            ("+7d", "whole number"),
            ("36501d", "100 years"),
            ("99999999999999999999999d", "100 years"),
            ("7d; DROP TABLE jobs", "whole number"),
            ("७d", "whole number"),
        ] {
            let e = parse_keep(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let huge = "9".repeat(100_000) + "d";
        assert!(
            parse_keep(&huge).unwrap_err().len() < 300,
            "errors stay short"
        );
    }

    #[test]
    fn overrides_make_their_own_rules() {
        let mut r = Retention::default();
        r.set(
            JobStatus::Failed,
            Keep::For(Duration::from_secs(30 * 86_400)),
        )
        .unwrap();
        r.set(JobStatus::Cancelled, Keep::Forever).unwrap();
        r.apply_override("thumbs:succeeded=1h").unwrap();
        r.apply_override("noisy=2h").unwrap();
        assert_eq!(
            r.keep("thumbs", JobStatus::Succeeded),
            Keep::For(Duration::from_secs(3600))
        );
        assert_eq!(
            r.keep("thumbs", JobStatus::Failed),
            r.keep("x", JobStatus::Failed)
        );
        assert_eq!(
            r.keep("noisy", JobStatus::Cancelled),
            Keep::For(Duration::from_secs(7200))
        );
        assert_eq!(r.keep("x", JobStatus::Cancelled), Keep::Forever);
        let rules = r.rules();
        let succeeded: Vec<_> = rules
            .iter()
            .filter(|r| r.status == JobStatus::Succeeded)
            .collect();
        assert_eq!(succeeded.len(), 3, "{succeeded:?}");
        let rest = succeeded.iter().find(|r| r.job_type.is_none()).unwrap();
        assert_eq!(rest.except_types, ["noisy", "thumbs"]);
        // Cancelled: only noisy's override prunes; the default keeps them forever.
        let cancelled: Vec<_> = rules
            .iter()
            .filter(|r| r.status == JobStatus::Cancelled)
            .collect();
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].job_type.as_deref(), Some("noisy"));
        assert_eq!(r.shortest(), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_overrides_are_refused() {
        let mut r = Retention::default();
        for bad in [
            "",
            "thumbs",
            "thumbs:=1h",
            "thumbs:running=1h",
            "thumbs:pending=1h",
            "thumbs:succeeded=-1h",
            "thumbs:succeeded=soon",
            ":succeeded=1h",
            "bad type:succeeded=1h",
            "x'; DROP TABLE jobs;--=1h",
        ] {
            assert!(r.apply_override(bad).is_err(), "accepted {bad:?}");
        }
        assert!(r.set(JobStatus::Pending, Keep::Forever).is_err());
        assert_eq!(r, Retention::default(), "nothing half-applied");
    }
}
