//! What the operators' store methods take: a [`Selection`] of jobs for bulk retry and
//! cancel (checked once, above the seam, by [`check_bulk`]) and a [`PruneRule`] for retention.

use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::job::JobStatus;

/// Which jobs a bulk retry or cancel takes: every filter given must match. Unlike
/// [`JobFilter`] it has no cursor: each call takes the first matching jobs in ID order, and
/// the ones it changed no longer match, so calling again takes the next ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    pub batch_id: Option<Uuid>,
}

impl Selection {
    /// Whether it names anything at all: a bulk operation needs at least one filter, so that
    /// "every job" is never what a forgotten flag means.
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.job_type.is_none() && self.batch_id.is_none()
    }
}

/// One pruning rule: finished jobs with `status`, finished more than `older_than` ago, of
/// `job_type` when given, otherwise of any type but `except_types` (those have rules of their
/// own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRule {
    pub status: JobStatus,
    pub job_type: Option<String>,
    pub except_types: Vec<String>,
    pub older_than: Duration,
}

/// Most jobs one bulk retry or cancel may change: enough to clear a large batch in a few
/// calls, small enough that one transaction's locks and WAL stay modest.
pub const MAX_BULK: i64 = 10_000;

/// A bulk operation needs a filter, a status it can change, and a bounded size.
pub(super) fn check_bulk(
    sel: &Selection,
    limit: i64,
    statuses: &[JobStatus],
    done: &str,
) -> Result<()> {
    if sel.is_empty() {
        return Err(Error::Invalid(
            "give at least one filter (status, type or batch)".into(),
        ));
    }
    if let Some(s) = sel.status {
        if !statuses.contains(&s) {
            let can: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            return Err(Error::Invalid(format!(
                "only {} jobs can be {done}, not {s}",
                can.join(" or ")
            )));
        }
    }
    if let Some(t) = &sel.job_type {
        crate::job::validate_type(t).map_err(Error::Invalid)?;
    }
    if !(1..=MAX_BULK).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit must be between 1 and {MAX_BULK}, got {limit}"
        )));
    }
    Ok(())
}
