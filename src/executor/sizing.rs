//! How many jobs a runner takes per transaction when the chunk size is adaptive (the
//! default): one while work trickles in, for the lowest pickup latency; doubling while every
//! chunk comes back full (a backlog), up to the node's maximum; halving, not collapsing, when
//! a chunk comes back short, so that work arriving in bursts (a producer's batches) is taken
//! in a few large chunks instead of doubling up from one again each burst; never more than fit in
//! [`CHUNK_TIME`] at the jobs' measured pace, so slow jobs are not queued behind each other
//! in one runner while other runners idle.

use std::time::Duration;

/// The longest a chunk should take at its jobs' measured pace. Long enough that commits are
/// a small share of a backlog of short jobs; short enough that a chunk of slower jobs does
/// not keep its jobs from runners that are free.
pub const CHUNK_TIME: Duration = Duration::from_millis(100);

/// A runner's chunk size.
#[derive(Debug, Clone)]
pub struct Sizing {
    size: usize,
    max: usize,
    adaptive: bool,
    /// Time per job over the recent chunks (an exponential average), once measured.
    per_job: Option<Duration>,
}

impl Sizing {
    /// `max` is the fixed size when not `adaptive`, else the ceiling.
    pub fn new(max: usize, adaptive: bool) -> Self {
        Sizing {
            size: if adaptive { 1 } else { max },
            max: max.max(1),
            adaptive,
            per_job: None,
        }
    }

    /// How many jobs to ask for next.
    pub fn next(&self) -> usize {
        if !self.adaptive {
            return self.max;
        }
        let by_time = match self.per_job {
            Some(t) if !t.is_zero() => {
                (CHUNK_TIME.as_nanos() / t.as_nanos()).clamp(1, usize::MAX as u128) as usize
            }
            _ => self.max,
        };
        self.size.min(by_time).min(self.max).max(1)
    }

    /// What the last chunk was: `asked` for, `got` jobs, in `took`.
    pub fn ran(&mut self, asked: usize, got: usize, took: Duration) {
        if !self.adaptive {
            return;
        }
        if got > 0 {
            let t = took / got as u32;
            self.per_job = Some(match self.per_job {
                // Weighted 1/4 new: a few slow chunks bring the size down quickly, a single
                // one does not.
                Some(avg) => (avg * 3 + t) / 4,
                None => t,
            });
        }
        self.size = if got >= asked {
            // Full: there is more where that came from. (A smaller ask than the size, held
            // down by slow jobs, says nothing about more.)
            if asked >= self.size {
                self.size.saturating_mul(2).min(self.max)
            } else {
                self.size
            }
        } else {
            // The backlog was smaller than asked. Halve, but not below what there was: asking
            // a nearly empty queue for more than it holds costs nothing (the claim returns
            // what there is), while dropping straight to one would make the next burst take
            // a doubling round per power of two. A trickle still brings it down to one.
            (self.size / 2).max(got).max(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(20);

    #[test]
    fn starts_at_one_and_doubles_while_chunks_come_back_full() {
        let mut s = Sizing::new(1000, true);
        let mut seen = vec![];
        for _ in 0..12 {
            let n = s.next();
            seen.push(n);
            s.ran(n, n, FAST * n as u32);
        }
        assert_eq!(seen[..4], [1, 2, 4, 8]);
        assert_eq!(*seen.last().unwrap(), 1000);
    }

    #[test]
    fn halves_when_the_backlog_runs_out_and_a_trickle_brings_it_to_one() {
        let mut s = Sizing::new(1000, true);
        for _ in 0..12 {
            let n = s.next();
            s.ran(n, n, FAST * n as u32);
        }
        s.ran(1000, 3, FAST * 3);
        assert_eq!(s.next(), 500);
        // Never below what the last chunk found.
        s.ran(500, 400, FAST * 400);
        assert_eq!(s.next(), 400);
        let mut seen = vec![];
        for _ in 0..12 {
            let n = s.next();
            s.ran(n, 1.min(n), FAST);
            seen.push(s.next());
        }
        assert_eq!(seen[..3], [200, 100, 50]);
        assert_eq!(*seen.last().unwrap(), 1);
    }

    #[test]
    fn a_burst_after_a_backlog_starts_from_a_large_chunk() {
        let mut s = Sizing::new(1000, true);
        for _ in 0..12 {
            let n = s.next();
            s.ran(n, n, FAST * n as u32);
        }
        // Between bursts the runner finds nothing once; the next burst is asked for in 500s.
        s.ran(1000, 0, Duration::ZERO);
        assert_eq!(s.next(), 500);
    }

    #[test]
    fn slow_jobs_keep_chunks_small() {
        let mut s = Sizing::new(1000, true);
        for _ in 0..20 {
            let n = s.next();
            s.ran(n, n, Duration::from_millis(40) * n as u32);
        }
        // 100 ms of 40 ms jobs: two at most.
        assert!(s.next() <= 2, "{}", s.next());
    }

    #[test]
    fn a_full_chunk_held_down_by_slow_jobs_keeps_the_size() {
        let mut s = Sizing::new(1000, true);
        for _ in 0..20 {
            let n = s.next();
            s.ran(n, n, Duration::from_millis(50) * n as u32);
        }
        // 50 ms jobs hold the ask to two, and two found says nothing of more: the size did
        // not double on to the ceiling meanwhile, ready to take 1,000 jobs of unknown pace.
        assert_eq!(s.next(), 2);
        assert!(s.size <= 4, "{}", s.size);
    }

    #[test]
    fn a_fixed_size_never_moves() {
        let mut s = Sizing::new(7, false);
        s.ran(7, 0, Duration::ZERO);
        s.ran(7, 7, Duration::from_secs(10));
        assert_eq!(s.next(), 7);
    }
}
