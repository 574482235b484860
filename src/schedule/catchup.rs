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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
