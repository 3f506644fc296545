//! Cron schedule math, with the clock passed in: which ticks of a schedule fall in a span of
//! time, and which of them a node should insert given the last tick claimed and a catch-up
//! policy. Nothing here reads the wall clock, so tests run on a fixed one.
//!
//! Patterns are five fields (minute precision) or six (seconds first), or a shorthand
//! (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), parsed by `croner`, evaluated in
//! an IANA time zone (`chrono-tz`). Daylight saving follows Vixie cron: a time that does not
//! exist on a spring-forward day runs at the first instant after the gap, and a time that
//! occurs twice on a fall-back day runs once. A tick is the UTC instant it falls on.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// How many ticks one evaluation inserts at most under `catch_up = "all"`; the rest follow in
/// the next evaluations. Bounds one transaction after a long outage of a frequent schedule.
pub const MAX_CATCH_UP: usize = 1000;

/// How late a tick may be found and still count as on time under `catch_up = "none"`: a
/// minute, or half the time to the schedule's next tick if that is shorter. A node evaluates
/// right after each tick, so a tick found later than this was missed while no node ran (or
/// every node was stalled), not merely noticed late.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// What to do with ticks that passed while no node evaluated the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Skip them: only a tick found within [`ON_TIME`] of its time runs.
    None,
    /// Run the latest of them once (the default): a nightly job missed runs when a node is
    /// back, once however many nights were missed.
    #[default]
    Last,
    /// Run every one, oldest first ([`MAX_CATCH_UP`] per evaluation).
    All,
}

impl FromStr for CatchUp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(CatchUp::None),
            "last" => Ok(CatchUp::Last),
            "all" => Ok(CatchUp::All),
            other => Err(format!(
                "unknown catch_up {:?}: use none, last or all",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// A parsed pattern in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    pattern: String,
}

/// Longest pattern accepted: real ones are a few dozen characters.
const MAX_PATTERN_LEN: usize = 200;

impl Schedule {
    /// Parses `pattern` in the IANA zone `zone`; the error says which was wrong and why.
    pub fn parse(pattern: &str, zone: &str) -> Result<Self, String> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "schedule is {} bytes; at most {MAX_PATTERN_LEN}",
                pattern.len()
            ));
        }
        let fields = pattern.split_whitespace().count();
        if !pattern.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "schedule {pattern:?} has {fields} fields: give five (minute hour day month weekday), six (seconds first) or a shorthand such as @hourly"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(pattern.trim())
            .map_err(|e| format!("schedule {pattern:?}: {e}"))?;
        let zone = Tz::from_str(zone).map_err(|_| {
            format!(
                "unknown time zone {:?}: give an IANA name such as UTC, Europe/Berlin or America/New_York",
                zone.chars().take(60).collect::<String>()
            )
        })?;
        let s = Schedule {
            cron,
            zone,
            pattern: pattern.trim().to_string(),
        };
        // A pattern that never matches (February 30th) is a mistake, not a schedule.
        if s.next_after(Utc::now()).is_none() {
            return Err(format!("schedule {pattern:?} never matches"));
        }
        Ok(s)
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Ticks in `(after, until]`, oldest first, at most `max`.
    pub fn ticks(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < max {
            match self.next_after(t) {
                Some(n) if n <= until => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}

/// What one evaluation does: insert a job for each of `run` and move the entry's mark to
/// `mark` (the latest tick considered, run or skipped). `None`: nothing is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub run: Vec<DateTime<Utc>>,
    pub mark: DateTime<Utc>,
}

/// The plan for a schedule whose last claimed tick is `last`, at `now`.
pub fn plan(
    s: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: CatchUp,
) -> Option<Plan> {
    let first = s.next_after(last).filter(|t| *t <= now)?;
    match catch_up {
        CatchUp::All => {
            let run = s.ticks(last, now, MAX_CATCH_UP);
            let mark = *run.last().unwrap_or(&first);
            Some(Plan { run, mark })
        }
        CatchUp::Last | CatchUp::None => {
            let latest = s
                .last_at_or_before(now)
                .filter(|t| *t > last)
                .unwrap_or(first);
            let on_time = late_by(now, latest) <= on_time_limit(s, latest);
            let run = if catch_up == CatchUp::Last || on_time {
                vec![latest]
            } else {
                Vec::new()
            };
            Some(Plan { run, mark: latest })
        }
    }
}

fn late_by(now: DateTime<Utc>, tick: DateTime<Utc>) -> Duration {
    now.signed_duration_since(tick).to_std().unwrap_or_default()
}

/// See [`ON_TIME`].
fn on_time_limit(s: &Schedule, tick: DateTime<Utc>) -> Duration {
    let gap = s.next_after(tick).map(|n| late_by(n, tick) / 2);
    gap.map_or(ON_TIME, |g| g.min(ON_TIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_0230_job_runs_once_on_both_dst_days() {
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        // Spring forward, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist and
        // runs at the first instant after the gap (03:00 CEST = 01:00 UTC).
        let day = s.ticks(utc("2026-03-28T12:00:00Z"), utc("2026-03-29T12:00:00Z"), 10);
        assert_eq!(day, [utc("2026-03-29T01:00:00Z")]);
        // Fall back, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice and runs
        // once, at its first occurrence (02:30 CEST = 00:30 UTC).
        let day = s.ticks(utc("2026-10-24T12:00:00Z"), utc("2026-10-25T12:00:00Z"), 10);
        assert_eq!(day, [utc("2026-10-25T00:30:00Z")]);
        // The days around them are ordinary.
        let week = s.ticks(utc("2026-10-21T12:00:00Z"), utc("2026-10-28T12:00:00Z"), 10);
        assert_eq!(week.len(), 7);
        // The same through the plan, a node evaluating every ten minutes across each day.
        for (from, to, want) in [
            ("2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z", 1),
            ("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z", 1),
        ] {
            let mut last = utc(from);
            let mut now = last;
            let mut ran = Vec::new();
            while now < utc(to) {
                now += chrono::Duration::minutes(10);
                if let Some(p) = plan(&s, last, now, CatchUp::All) {
                    ran.extend(p.run);
                    last = p.mark;
                }
            }
            assert_eq!(ran.len(), want, "{from}: {ran:?}");
        }
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        let s = Schedule::parse("30 2 * * *", "America/New_York").unwrap();
        // 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let day = s.ticks(utc("2026-03-07T12:00:00Z"), utc("2026-03-08T12:00:00Z"), 10);
        assert_eq!(day.len(), 1);
        // 2026-11-01: 02:00 EDT becomes 01:00 EST; 02:30 EST happens once.
        let day = s.ticks(utc("2026-10-31T12:00:00Z"), utc("2026-11-01T12:00:00Z"), 10);
        assert_eq!(day, [utc("2026-11-01T07:30:00Z")]);
    }

    /// A per-minute schedule last claimed at 10:00 and evaluated at 10:05:40: 10:01 to 10:05
    /// are 5 missed ticks (10:05 is 40 s old, more than half the minute to the next one).
    #[test]
    fn catch_up_after_five_missed_ticks() {
        let s = Schedule::parse("* * * * *", "UTC").unwrap();
        let last = utc("2026-01-01T10:00:00Z");
        let now = utc("2026-01-01T10:05:40Z");
        let t = |m: u32| Utc.with_ymd_and_hms(2026, 1, 1, 10, m, 0).unwrap();

        let p = plan(&s, last, now, CatchUp::All).unwrap();
        assert_eq!(
            p.run,
            (1..=5).map(t).collect::<Vec<_>>(),
            "all: every one, oldest first"
        );
        assert_eq!(p.mark, t(5));
        let p = plan(&s, last, now, CatchUp::Last).unwrap();
        assert_eq!(p.run, [t(5)], "last: the latest, once");
        assert_eq!(p.mark, t(5));
        let p = plan(&s, last, now, CatchUp::None).unwrap();
        assert!(p.run.is_empty(), "none: skipped");
        assert_eq!(p.mark, t(5), "skipped ticks are claimed all the same");

        // The next tick, found on time, runs under every policy.
        let on_time = t(6) + chrono::Duration::seconds(2);
        for c in [CatchUp::None, CatchUp::Last, CatchUp::All] {
            assert_eq!(plan(&s, t(5), on_time, c).unwrap().run, [t(6)], "{c:?}");
        }
        // Nothing due: no plan.
        assert_eq!(
            plan(&s, t(6), t(6) + chrono::Duration::seconds(59), CatchUp::All),
            None
        );
    }

    #[test]
    fn all_is_bounded_per_evaluation() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let last = utc("2026-01-01T00:00:00Z");
        let p = plan(&s, last, last + chrono::Duration::hours(1), CatchUp::All).unwrap();
        assert_eq!(p.run.len(), MAX_CATCH_UP);
        assert_eq!(p.mark, *p.run.last().unwrap(), "the rest follow next time");
    }

    #[test]
    fn shorthands_and_seconds_parse() {
        let at = utc("2026-05-05T10:20:30Z");
        for (p, next) in [
            ("@hourly", "2026-05-05T11:00:00Z"),
            ("@daily", "2026-05-06T00:00:00Z"),
            ("*/10 * * * * *", "2026-05-05T10:20:40Z"),
            ("0 3 * * MON", "2026-05-11T03:00:00Z"),
        ] {
            let s = Schedule::parse(p, "UTC").unwrap();
            assert_eq!(s.next_after(at), Some(utc(next)), "{p}");
        }
    }

    #[test]
    fn bad_schedules_and_zones_say_why() {
        for (p, z, says) in [
            ("* * * *", "UTC", "4 fields"),
            ("* * * * * * *", "UTC", "7 fields"),
            ("61 * * * *", "UTC", "61 * * * *"),
            ("* * * * blursday", "UTC", "blursday"),
            ("", "UTC", "0 fields"),
            ("@sometimes", "UTC", "@sometimes"),
            ("0 0 30 2 *", "UTC", "never"),
            ("* * * * *", "Mars/Olympus", "unknown time zone"),
            ("* * * * *", "", "unknown time zone"),
        ] {
            let e = Schedule::parse(p, z).unwrap_err();
            assert!(e.contains(says), "{p:?} {z:?}: {e}");
        }
        assert!(Schedule::parse(&"*".repeat(300), "UTC")
            .unwrap_err()
            .contains("at most"));
        assert!("sometimes"
            .parse::<CatchUp>()
            .unwrap_err()
            .contains("none, last or all"));
    }
}
