//! Two costs the scale phase times on a filled table and on an empty one.
//!
//! Claim latency: one runner's slot ([`crate::store::Slot::claim`]) claims chunks of `k`
//! jobs in a loop, alone, and each claim is timed from the call to the locked jobs in hand;
//! the chunk is then finished (succeeded) outside the timing, so the next claim meets the
//! table as a worker would. This is the statement a runner really runs (the claim with its
//! `SKIP LOCKED` and the committed intent record), through the store's own plan, rather than
//! a hand-written `SELECT … FOR UPDATE SKIP LOCKED` that could use a different plan than the
//! store's. With one slot and no other load, it is the claim's own cost, not contention.
//!
//! Report cost: the status report (`skiplock status`), warmed once, then timed a few times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::load::percentile;
use crate::error::Result;
use crate::store::{Outcome, Store};

/// Claims timed per table: enough for a p99, few enough to leave the backlog as it was.
pub const CLAIMS: usize = 200;
/// Reports timed (after one warm-up); the median is kept.
pub const REPORTS: usize = 5;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClaimCost {
    pub claims: usize,
    pub chunk: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Times `claims` claims of `chunk` jobs by one slot.
pub async fn claim_latency(
    store: &Arc<dyn Store>,
    claims: usize,
    chunk: usize,
) -> Result<ClaimCost> {
    let scope = crate::store::Scope {
        queue: crate::job::DEFAULT_QUEUE.into(),
        types: vec!["noop".to_string()].into(),
    };
    let mut slot = store.slot("bench-claims", &scope).await?;
    let mut ms = Vec::with_capacity(claims);
    for _ in 0..claims {
        let started = Instant::now();
        let locked = slot.claim(chunk).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let outcomes: Vec<Outcome> = locked
            .jobs
            .iter()
            .map(|j| Outcome::Succeeded { id: j.id })
            .collect();
        locked.finish(&outcomes).await?;
    }
    ms.sort_by(f64::total_cmp);
    Ok(ClaimCost {
        claims,
        chunk,
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
    })
}

/// The median time of a status report, in milliseconds.
pub async fn report_ms(store: &Arc<dyn Store>) -> Result<f64> {
    let stale = Duration::from_secs(30);
    store.report(stale).await?;
    let mut ms = Vec::with_capacity(REPORTS);
    for _ in 0..REPORTS {
        let started = Instant::now();
        store.report(stale).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(percentile(&ms, 0.5))
}
