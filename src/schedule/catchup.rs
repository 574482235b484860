//! What a daemon does after downtime, and when the previous run is still going.
//! Pure functions: the caller supplies the instants and the running state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CronSchedule;
use crate::clock::Timestamp;

/// Most fire times [`missed_fires`] returns under [`CatchUp::All`]. A minutely
/// schedule with a 24 h `max_age` would otherwise start 1,440 runs at once;
/// beyond this many, replaying every fire is never what the engineer meant, so
/// the most recent ones are kept and the cut is logged.
pub const MAX_CATCH_UP_FIRES: usize = 1000;

/// Which missed fire times to run when the daemon comes back.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run none: wait for the next fire time. The default, because a missed night
    /// window must not start porting numbers in the morning unless asked to.
    #[default]
    Skip,
    /// Run the latest missed fire time once, if it is within `max_age`.
    Once,
    /// Run every missed fire time within `max_age` (at most [`MAX_CATCH_UP_FIRES`]).
    All,
}

/// What to do when a fire time comes while the previous run is still going.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Drop this fire. The default: two porting waves at once would compete for
    /// the same tenant and the same engineers.
    #[default]
    Skip,
    /// Start this fire once the previous run has finished.
    Queue,
    /// Start it alongside the previous run.
    Allow,
}

/// The outcome of [`decide_overlap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapDecision {
    /// Start the run now.
    Start,
    /// Do not run this fire at all.
    Skip,
    /// Start it when the previous run ends.
    Queue,
}

/// The fire times in `(last_fired, now]` that should run now under `policy`.
///
/// Only fire times no older than `max_age` (`now - fire <= max_age`) count.
/// `last_fired = None` means the schedule has no record of ever firing: nothing is
/// treated as missed, so registering a schedule never launches a run for a time
/// before it existed (pass the registration time to catch up from there).
/// Under [`CatchUp::All`] at most [`MAX_CATCH_UP_FIRES`] (the most recent) are
/// returned. The result is in ascending order.
pub fn missed_fires(
    schedule: &CronSchedule,
    last_fired: Option<Timestamp>,
    now: Timestamp,
    policy: CatchUp,
    max_age: Duration,
) -> Vec<Timestamp> {
    let Some(last_fired) = last_fired else {
        return Vec::new();
    };
    let limit = match policy {
        CatchUp::Skip => return Vec::new(),
        CatchUp::Once => 1,
        CatchUp::All => MAX_CATCH_UP_FIRES,
    };
    let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let oldest = now.0.saturating_sub(max_age_ms);
    let eligible = |t: Timestamp| t > last_fired && t.0 >= oldest;

    // Walk back from `now`: bounded by `limit`, however long the outage was.
    let mut fires = Vec::new();
    let mut next = schedule.last_at_or_before(now);
    while let Some(fire) = next.filter(|t| eligible(*t)) {
        if fires.len() == limit {
            if policy == CatchUp::All {
                tracing::warn!(
                    schedule = schedule.expression(),
                    kept = limit,
                    "more than {limit} missed fire times: running only the most recent {limit}"
                );
            }
            break;
        }
        fires.push(fire);
        next = schedule.prev_before(fire);
    }
    fires.reverse();
    fires
}

/// Decide what to do with a fire time under `policy`.
pub fn decide_overlap(policy: Overlap, previous_still_running: bool) -> OverlapDecision {
    match (policy, previous_still_running) {
        (_, false) | (Overlap::Allow, true) => OverlapDecision::Start,
        (Overlap::Skip, true) => OverlapDecision::Skip,
        (Overlap::Queue, true) => OverlapDecision::Queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::ts;

    const HOUR: Duration = Duration::from_secs(3600);

    fn sched(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    // A 3-day outage: last fired Friday 2026-11-20, back on Monday 2026-11-23 10:30Z.
    const BACK: &str = "2026-11-23T10:30:00Z";

    #[test]
    fn hourly_schedule_after_a_three_day_outage() {
        let s = sched("0 * * * *", "UTC");
        let last = Some(ts("2026-11-20T10:00:00Z"));
        let now = ts(BACK);
        let run = |policy, max_age| missed_fires(&s, last, now, policy, max_age);

        assert_eq!(run(CatchUp::Skip, 24 * HOUR), []);
        assert_eq!(run(CatchUp::Once, 24 * HOUR), [ts("2026-11-23T10:00:00Z")]);
        // The latest missed fire is 30 minutes old: too old for a 10-minute max_age.
        assert_eq!(run(CatchUp::Once, Duration::from_secs(600)), []);
        // max_age is inclusive: a fire exactly max_age old still runs.
        assert_eq!(
            run(CatchUp::All, Duration::from_secs(1800)),
            [ts("2026-11-23T10:00:00Z")]
        );

        let day = run(CatchUp::All, 24 * HOUR);
        assert_eq!(day.len(), 24);
        assert_eq!(day.first(), Some(&ts("2026-11-22T11:00:00Z")));
        assert_eq!(day.last(), Some(&ts("2026-11-23T10:00:00Z")));

        let all = run(CatchUp::All, 7 * 24 * HOUR);
        assert_eq!(all.len(), 72);
        assert_eq!(all.first(), Some(&ts("2026-11-20T11:00:00Z")));
        assert!(all.windows(2).all(|w| w[1].0 - w[0].0 == 3_600_000));
    }

    #[test]
    fn nightly_schedule_after_a_three_day_outage() {
        // 02:00 Berlin = 01:00Z in November.
        let s = sched("0 2 * * *", "Europe/Berlin");
        let last = Some(ts("2026-11-20T01:00:00Z"));
        let now = ts(BACK);
        let run = |policy, max_age| missed_fires(&s, last, now, policy, max_age);

        assert_eq!(run(CatchUp::Skip, 7 * 24 * HOUR), []);
        assert_eq!(run(CatchUp::Once, 24 * HOUR), [ts("2026-11-23T01:00:00Z")]);
        assert_eq!(
            run(CatchUp::Once, 7 * 24 * HOUR),
            [ts("2026-11-23T01:00:00Z")]
        );
        assert_eq!(run(CatchUp::All, 24 * HOUR), [ts("2026-11-23T01:00:00Z")]);
        assert_eq!(
            run(CatchUp::All, 48 * HOUR),
            [ts("2026-11-22T01:00:00Z"), ts("2026-11-23T01:00:00Z")]
        );
        assert_eq!(
            run(CatchUp::All, 7 * 24 * HOUR),
            [
                ts("2026-11-21T01:00:00Z"),
                ts("2026-11-22T01:00:00Z"),
                ts("2026-11-23T01:00:00Z")
            ]
        );
        // Nothing missed when the last fire was the latest one.
        let none = missed_fires(
            &s,
            Some(ts("2026-11-23T01:00:00Z")),
            now,
            CatchUp::All,
            7 * 24 * HOUR,
        );
        assert_eq!(none, []);
    }

    #[test]
    fn interval_ends_are_exclusive_then_inclusive() {
        let s = sched("0 2 * * *", "UTC");
        // A fire exactly at `now` is due; the one at `last_fired` already ran.
        let got = missed_fires(
            &s,
            Some(ts("2026-11-22T02:00:00Z")),
            ts("2026-11-23T02:00:00Z"),
            CatchUp::All,
            7 * 24 * HOUR,
        );
        assert_eq!(got, [ts("2026-11-23T02:00:00Z")]);
    }

    #[test]
    fn no_record_or_a_future_record_catches_up_nothing() {
        let s = sched("0 * * * *", "UTC");
        assert_eq!(
            missed_fires(&s, None, ts(BACK), CatchUp::All, 24 * HOUR),
            []
        );
        let future = Some(ts("2026-11-24T00:00:00Z"));
        assert_eq!(
            missed_fires(&s, future, ts(BACK), CatchUp::All, 24 * HOUR),
            []
        );
    }

    #[test]
    fn all_is_capped_at_the_most_recent_thousand() {
        let s = sched("* * * * *", "UTC");
        let now = ts(BACK);
        let got = missed_fires(
            &s,
            Some(ts("2026-11-20T10:00:00Z")),
            now,
            CatchUp::All,
            7 * 24 * HOUR,
        );
        assert_eq!(got.len(), MAX_CATCH_UP_FIRES);
        assert_eq!(got.last(), Some(&now));
        assert_eq!(got.first(), Some(&Timestamp(now.0 - 999 * 60_000)));
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn catch_up_across_fall_back_runs_the_fixed_time_once() {
        // Down over the Berlin fall-back night: 02:30 ran once that day.
        let s = sched("30 2 * * *", "Europe/Berlin");
        let got = missed_fires(
            &s,
            Some(ts("2026-10-23T23:00:00Z")),
            ts("2026-10-26T12:00:00Z"),
            CatchUp::All,
            7 * 24 * HOUR,
        );
        assert_eq!(
            got,
            [
                ts("2026-10-24T00:30:00Z"),
                ts("2026-10-25T00:30:00Z"),
                ts("2026-10-26T01:30:00Z")
            ]
        );
    }

    #[test]
    fn overlap_decisions() {
        use OverlapDecision as D;
        let table = [
            (Overlap::Skip, false, D::Start),
            (Overlap::Skip, true, D::Skip),
            (Overlap::Queue, false, D::Start),
            (Overlap::Queue, true, D::Queue),
            (Overlap::Allow, false, D::Start),
            (Overlap::Allow, true, D::Start),
        ];
        for (policy, running, want) in table {
            assert_eq!(
                decide_overlap(policy, running),
                want,
                "{policy:?} running={running}"
            );
        }
    }

    #[test]
    fn policies_serialize_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&CatchUp::Once).ok().as_deref(),
            Some("\"once\"")
        );
        assert_eq!(
            serde_json::to_string(&Overlap::Queue).ok().as_deref(),
            Some("\"queue\"")
        );
        assert_eq!(
            serde_json::from_str::<CatchUp>("\"all\"").ok(),
            Some(CatchUp::All)
        );
        assert_eq!(
            serde_json::from_str::<Overlap>("\"allow\"").ok(),
            Some(Overlap::Allow)
        );
        assert!(serde_json::from_str::<CatchUp>("\"All\"").is_err());
        assert_eq!(CatchUp::default(), CatchUp::Skip);
        assert_eq!(Overlap::default(), Overlap::Skip);
    }
}
