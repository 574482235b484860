//! A schedule's stored state and the daemon's decisions about it, as pure
//! functions of that state and the current instant (tested with a virtual clock).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CompiledSchedule, OverlapDecision, ScheduleSpec};
use crate::clock::Timestamp;

/// A fire this late (or less) is on time; older ones were missed while the daemon
/// was down and go through the catch-up policy.
pub const ON_TIME_GRACE: Duration = Duration::from_secs(120);

/// History entries kept per schedule (newest last).
pub const HISTORY_KEPT: usize = 50;

/// Run ids kept per schedule (newest last).
pub const RUNS_KEPT: usize = 200;

/// What the daemon stores about one schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The schedule as written (run file paths made absolute when added).
    pub spec: ScheduleSpec,
    /// When it was added.
    pub added_at: Timestamp,
    /// Paused schedules never fire; fire times passed while paused are dropped.
    #[serde(default)]
    pub paused: bool,
    /// The latest fire time dealt with (run, skipped or queued).
    #[serde(default)]
    pub last_fired: Option<Timestamp>,
    /// Fire times waiting for the previous run to finish (`overlap: queue`).
    #[serde(default)]
    pub queued: Vec<Timestamp>,
    /// Launches decided but not yet known to be stored: the run id is chosen and
    /// recorded first, so a crash between the decision and the run is repaired on
    /// restart instead of firing twice or not at all.
    #[serde(default)]
    pub pending: Vec<PendingLaunch>,
    /// Runs this schedule started, oldest first.
    #[serde(default)]
    pub runs: Vec<String>,
    /// What happened at recent fire times, oldest first.
    #[serde(default)]
    pub history: Vec<FireLog>,
}

/// A launch being made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLaunch {
    /// The fire time it is for.
    pub fire: Timestamp,
    /// The run id chosen for it.
    pub run: String,
}

/// What happened at one fire time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireLog {
    /// The fire time.
    pub fire: Timestamp,
    /// When the daemon dealt with it.
    pub at: Timestamp,
    /// What it did.
    pub outcome: FireOutcome,
}

/// The outcome of a fire time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FireOutcome {
    /// A run was started.
    Started {
        /// Its id.
        run: String,
        /// How many subjects it has.
        subjects: u32,
    },
    /// Nothing was started, on purpose.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Waiting for the previous run to finish.
    Queued,
    /// Starting failed (bad run file, storage error); the next fire tries again.
    Failed {
        /// The error.
        error: String,
    },
}

impl FireOutcome {
    /// One line for tables.
    pub fn describe(&self) -> String {
        match self {
            FireOutcome::Started { run, subjects } => {
                format!("started run {run} ({subjects} subjects)")
            }
            FireOutcome::Skipped { reason } => format!("skipped: {reason}"),
            FireOutcome::Queued => "queued behind the previous run".into(),
            FireOutcome::Failed { error } => format!("failed: {error}"),
        }
    }
}

/// The fire times in `(last_fired, now]` to run at `now`: the on-time one (at most
/// [`ON_TIME_GRACE`] old) always, older ones as the catch-up policy says. With
/// `catch_up: once` the on-time fire counts as the one run.
pub fn due_fires(
    s: &CompiledSchedule,
    last_fired: Option<Timestamp>,
    now: Timestamp,
) -> Vec<Timestamp> {
    let Some(last) = last_fired else {
        return Vec::new();
    };
    let on_time = s
        .schedule
        .last_at_or_before(now)
        .filter(|t| *t > last && now.since(*t) <= ON_TIME_GRACE);
    let mut fires: Vec<Timestamp> = s
        .missed_fires(Some(last), now)
        .into_iter()
        .filter(|t| Some(*t) != on_time)
        .collect();
    if let Some(t) = on_time {
        if s.catch_up == super::CatchUp::Once {
            fires.clear();
        }
        fires.push(t);
    }
    fires
}

impl ScheduleRecord {
    /// A new schedule, due from `now` on (fire times before it are never missed).
    pub fn new(spec: ScheduleSpec, now: Timestamp) -> ScheduleRecord {
        ScheduleRecord {
            spec,
            added_at: now,
            paused: false,
            last_fired: Some(now),
            queued: Vec::new(),
            pending: Vec::new(),
            runs: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The newest run this schedule started.
    pub fn last_run(&self) -> Option<&str> {
        self.runs.last().map(String::as_str)
    }

    fn log(&mut self, fire: Timestamp, at: Timestamp, outcome: FireOutcome) {
        self.history.push(FireLog { fire, at, outcome });
        if self.history.len() > HISTORY_KEPT {
            let extra = self.history.len() - HISTORY_KEPT;
            self.history.drain(..extra);
        }
    }

    /// Decide what to do at `now`. Records skips and queues in the history, moves
    /// `last_fired` on, and returns the fire times to launch now, oldest first.
    /// `previous_running`: the schedule's newest run has not finished.
    pub fn tick(
        &mut self,
        s: &CompiledSchedule,
        now: Timestamp,
        previous_running: bool,
    ) -> Vec<Timestamp> {
        if self.paused {
            return Vec::new();
        }
        let fires = due_fires(s, self.last_fired, now);
        let newest = s.schedule.last_at_or_before(now);
        if let (Some(t), Some(last)) = (newest, self.last_fired) {
            if t > last {
                let missed = count_fires(s, last, t).saturating_sub(fires.len());
                if missed > 0 {
                    self.log(
                        t,
                        now,
                        FireOutcome::Skipped {
                            reason: format!(
                                "{missed} fire time(s) missed while the daemon was down \
                                 (catch_up: {:?}, max_age {})",
                                s.catch_up,
                                humantime::format_duration(s.max_age)
                            )
                            .to_lowercase(),
                        },
                    );
                }
                self.last_fired = Some(t);
            }
        }
        let mut running = previous_running;
        let mut launch = Vec::new();
        if !running && !self.queued.is_empty() {
            launch.push(self.queued.remove(0));
            running = true;
        }
        for fire in fires {
            match s.decide_overlap(running) {
                OverlapDecision::Start => {
                    launch.push(fire);
                    running = true;
                }
                OverlapDecision::Skip => {
                    let reason = match self.last_run() {
                        Some(r) => format!("the previous run {r} has not finished (overlap: skip)"),
                        None => "the previous run has not finished (overlap: skip)".into(),
                    };
                    self.log(fire, now, FireOutcome::Skipped { reason });
                }
                OverlapDecision::Queue => {
                    self.queued.push(fire);
                    self.log(fire, now, FireOutcome::Queued);
                }
            }
        }
        launch
    }

    /// Record that the launch for `fire` started `run`.
    pub fn launched(&mut self, fire: Timestamp, now: Timestamp, run: &str, subjects: u32) {
        self.pending.retain(|p| p.run != run);
        self.runs.push(run.to_string());
        if self.runs.len() > RUNS_KEPT {
            let extra = self.runs.len() - RUNS_KEPT;
            self.runs.drain(..extra);
        }
        self.log(
            fire,
            now,
            FireOutcome::Started {
                run: run.to_string(),
                subjects,
            },
        );
    }

    /// Record that the launch for `fire` did not start a run.
    pub fn not_launched(&mut self, fire: Timestamp, now: Timestamp, outcome: FireOutcome) {
        self.pending.retain(|p| p.fire != fire);
        self.log(fire, now, outcome);
    }

    /// Pause: no fires until [`ScheduleRecord::resume`].
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Resume: fire times that passed while paused are dropped, not caught up.
    pub fn resume(&mut self, now: Timestamp) {
        self.paused = false;
        if self.last_fired.is_none_or(|t| t < now) {
            self.last_fired = Some(now);
        }
    }

    /// When the daemon must look at this schedule next (`None`: paused or never).
    pub fn next_wake(&self, s: &CompiledSchedule, now: Timestamp) -> Option<Timestamp> {
        if self.paused {
            return None;
        }
        let from = self.last_fired.map_or(now, |t| t.max(now));
        s.schedule.next_after(from)
    }

    /// The next `n` fire times after `now` (empty when paused).
    pub fn upcoming(&self, s: &CompiledSchedule, now: Timestamp, n: usize) -> Vec<Timestamp> {
        if self.paused {
            return Vec::new();
        }
        // A fire time already dealt with does not fire again.
        let from = self.last_fired.map_or(now, |t| t.max(now));
        s.schedule.next_n(from, n)
    }
}

/// Fire times in `(after, upto]`, counted up to a bound (for the history line).
fn count_fires(s: &CompiledSchedule, after: Timestamp, upto: Timestamp) -> usize {
    let mut n = 0;
    let mut t = after;
    while let Some(next) = s.schedule.next_after(t).filter(|x| *x <= upto) {
        n += 1;
        if n >= 100_000 {
            break;
        }
        t = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::ts;
    use crate::schedule::{CatchUp, CatchUpSpec, Launch, Overlap};

    fn spec(cron: &str, overlap: Overlap, catch_up: CatchUp, max_age_h: u64) -> ScheduleSpec {
        ScheduleSpec {
            name: "waves".into(),
            cron: cron.into(),
            timezone: "Europe/Berlin".into(),
            overlap,
            catch_up: CatchUpSpec {
                policy: catch_up,
                max_age: Duration::from_secs(max_age_h * 3600),
            },
            launch: Launch::RunFile {
                path: "/w/dr.yaml".into(),
            },
        }
    }

    /// The daemon loop with a virtual clock: wake at each `next_wake`, tick, and
    /// pretend each started run takes `run_len`. The daemon is down in `down`.
    /// Returns the (virtual) start instants of the runs.
    fn simulate(
        rec: &mut ScheduleRecord,
        start: Timestamp,
        end: Timestamp,
        down: Option<(Timestamp, Timestamp)>,
        run_len: Duration,
    ) -> Vec<(Timestamp, Timestamp)> {
        let compiled = rec.spec.validate().unwrap_or_else(|e| panic!("{e}"));
        let mut started: Vec<(Timestamp, Timestamp)> = Vec::new();
        let mut now = start;
        loop {
            let running = started.last().is_some_and(|(at, _)| now < at.plus(run_len));
            for fire in rec.tick(&compiled, now, running) {
                rec.launched(fire, now, &format!("run-{}", started.len()), 10);
                started.push((now, fire));
            }
            // Wake at the next fire, or when the running run ends (a queued fire).
            let mut next = rec.next_wake(&compiled, now);
            if let Some((at, _)) = started.last() {
                let ends = at.plus(run_len);
                if ends > now && !rec.queued.is_empty() {
                    next = Some(next.map_or(ends, |n| n.min(ends)));
                }
            }
            let Some(mut t) = next else { break };
            if let Some((from, to)) = down {
                if t >= from && t < to {
                    t = to; // the daemon comes back at `to`
                }
            }
            if t > end {
                break;
            }
            now = t;
        }
        started
    }

    // Friday 2026-11-20 to Monday 2026-11-23: the daemon is down all weekend.
    const DOWN_FROM: &str = "2026-11-20T12:30:00Z";
    const BACK: &str = "2026-11-23T10:30:00Z";

    fn outage() -> Option<(Timestamp, Timestamp)> {
        Some((ts(DOWN_FROM), ts(BACK)))
    }

    fn hourly(catch_up: CatchUp, max_age_h: u64) -> Vec<(Timestamp, Timestamp)> {
        let mut rec = ScheduleRecord::new(
            spec("0 * * * *", Overlap::Allow, catch_up, max_age_h),
            ts("2026-11-20T09:30:00Z"),
        );
        simulate(
            &mut rec,
            ts("2026-11-20T09:30:00Z"),
            ts("2026-11-23T12:30:00Z"),
            outage(),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn three_day_outage_with_catch_up_skip_runs_only_fires_after_the_return() {
        let runs = hourly(CatchUp::Skip, 24);
        let fires: Vec<Timestamp> = runs.iter().map(|(_, f)| *f).collect();
        // Friday 10:00, 11:00, 12:00 UTC before the outage; Monday 11:00 and 12:00 after.
        assert_eq!(
            fires,
            [
                ts("2026-11-20T10:00:00Z"),
                ts("2026-11-20T11:00:00Z"),
                ts("2026-11-20T12:00:00Z"),
                ts("2026-11-23T11:00:00Z"),
                ts("2026-11-23T12:00:00Z"),
            ]
        );
    }

    #[test]
    fn three_day_outage_with_catch_up_once_runs_the_latest_missed_fire_at_the_return() {
        let runs = hourly(CatchUp::Once, 24);
        let back: Vec<&(Timestamp, Timestamp)> =
            runs.iter().filter(|(at, _)| *at == ts(BACK)).collect();
        assert_eq!(back.len(), 1, "{runs:?}");
        assert_eq!(back[0].1, ts("2026-11-23T10:00:00Z"));
        assert_eq!(runs.len(), 3 + 1 + 2);
    }

    #[test]
    fn three_day_outage_with_catch_up_all_runs_every_fire_within_max_age() {
        let runs = hourly(CatchUp::All, 6);
        let back: Vec<Timestamp> = runs
            .iter()
            .filter(|(at, _)| *at == ts(BACK))
            .map(|(_, f)| *f)
            .collect();
        // 04:30 is the oldest allowed (6 h before 10:30): 05:00 … 10:00.
        assert_eq!(back.len(), 6, "{back:?}");
        assert_eq!(back[0], ts("2026-11-23T05:00:00Z"));
        assert_eq!(back[5], ts("2026-11-23T10:00:00Z"));
    }

    #[test]
    fn catch_up_max_age_shorter_than_the_gap_runs_nothing() {
        // Nightly at 22:00 Berlin: the newest missed fire (Sunday 21:00Z) is 13.5 h old.
        let mut rec = ScheduleRecord::new(
            spec("0 22 * * *", Overlap::Skip, CatchUp::Once, 6),
            ts("2026-11-20T09:00:00Z"),
        );
        let runs = simulate(
            &mut rec,
            ts("2026-11-20T09:00:00Z"),
            ts("2026-11-23T12:00:00Z"),
            Some((ts("2026-11-20T10:00:00Z"), ts(BACK))),
            Duration::from_secs(3600),
        );
        assert!(runs.is_empty(), "{runs:?}");
        let last = rec.history.last().map(|h| h.outcome.describe());
        assert!(
            last.as_deref()
                .is_some_and(|d| d.contains("3 fire time(s) missed")),
            "{last:?}"
        );
    }

    #[test]
    fn overlap_skip_drops_fires_while_the_previous_run_goes_on() {
        // Every 10 minutes, each run takes 25 minutes: every third fire starts.
        let mut rec = ScheduleRecord::new(
            spec("*/10 * * * *", Overlap::Skip, CatchUp::Skip, 24),
            ts("2026-11-23T00:00:00Z"),
        );
        let runs = simulate(
            &mut rec,
            ts("2026-11-23T00:00:00Z"),
            ts("2026-11-23T01:00:00Z"),
            None,
            Duration::from_secs(25 * 60),
        );
        let fires: Vec<Timestamp> = runs.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            fires,
            [ts("2026-11-23T00:10:00Z"), ts("2026-11-23T00:40:00Z")]
        );
        let skipped = rec
            .history
            .iter()
            .filter(|h| matches!(h.outcome, FireOutcome::Skipped { .. }))
            .count();
        assert_eq!(skipped, 4);
    }

    #[test]
    fn overlap_queue_starts_each_fire_when_the_previous_run_ends() {
        let mut rec = ScheduleRecord::new(
            spec("*/10 * * * *", Overlap::Queue, CatchUp::Skip, 24),
            ts("2026-11-23T00:00:00Z"),
        );
        let runs = simulate(
            &mut rec,
            ts("2026-11-23T00:00:00Z"),
            ts("2026-11-23T00:45:00Z"),
            None,
            Duration::from_secs(15 * 60),
        );
        // 00:10 starts; 00:20 queues and starts at 00:25; 00:30 starts at 00:40.
        assert_eq!(
            runs,
            [
                (ts("2026-11-23T00:10:00Z"), ts("2026-11-23T00:10:00Z")),
                (ts("2026-11-23T00:25:00Z"), ts("2026-11-23T00:20:00Z")),
                (ts("2026-11-23T00:40:00Z"), ts("2026-11-23T00:30:00Z")),
            ]
        );
        assert_eq!(rec.queued, [ts("2026-11-23T00:40:00Z")]);
    }

    #[test]
    fn overlap_allow_starts_every_fire() {
        let mut rec = ScheduleRecord::new(
            spec("*/10 * * * *", Overlap::Allow, CatchUp::Skip, 24),
            ts("2026-11-23T00:00:00Z"),
        );
        let runs = simulate(
            &mut rec,
            ts("2026-11-23T00:00:00Z"),
            ts("2026-11-23T01:00:00Z"),
            None,
            Duration::from_secs(25 * 60),
        );
        assert_eq!(runs.len(), 6);
    }

    #[test]
    fn catch_up_all_with_overlap_queue_runs_the_missed_fires_one_after_another() {
        let mut rec = ScheduleRecord::new(
            spec("0 * * * *", Overlap::Queue, CatchUp::All, 3),
            ts("2026-11-20T09:30:00Z"),
        );
        let runs = simulate(
            &mut rec,
            ts("2026-11-20T09:30:00Z"),
            ts("2026-11-23T11:25:00Z"),
            Some((ts("2026-11-20T09:45:00Z"), ts(BACK))),
            Duration::from_secs(20 * 60),
        );
        let starts: Vec<String> = runs.iter().map(|(at, f)| format!("{at} for {f}")).collect();
        // Missed 08:00, 09:00, 10:00 (3 h max_age): one at a time, 20 minutes each;
        // the on-time 11:00 queues behind them.
        assert_eq!(
            starts,
            [
                "2026-11-23T10:30:00.000Z for 2026-11-23T08:00:00.000Z",
                "2026-11-23T10:50:00.000Z for 2026-11-23T09:00:00.000Z",
                "2026-11-23T11:10:00.000Z for 2026-11-23T10:00:00.000Z",
            ]
        );
        assert_eq!(rec.queued, [ts("2026-11-23T11:00:00Z")]);
    }

    #[test]
    fn a_paused_schedule_never_fires_and_drops_what_passed_while_paused() {
        let s = spec("0 * * * *", Overlap::Allow, CatchUp::All, 24);
        let compiled = s.validate().unwrap_or_else(|e| panic!("{e}"));
        let mut rec = ScheduleRecord::new(s, ts("2026-11-23T00:30:00Z"));
        rec.pause();
        assert!(rec
            .tick(&compiled, ts("2026-11-23T05:00:00Z"), false)
            .is_empty());
        assert_eq!(rec.next_wake(&compiled, ts("2026-11-23T05:00:00Z")), None);
        rec.resume(ts("2026-11-23T05:10:00Z"));
        assert!(rec
            .tick(&compiled, ts("2026-11-23T05:10:00Z"), false)
            .is_empty());
        assert_eq!(
            rec.tick(&compiled, ts("2026-11-23T06:00:00Z"), false),
            [ts("2026-11-23T06:00:00Z")]
        );
    }

    #[test]
    fn a_new_schedule_never_fires_for_times_before_it_existed() {
        let s = spec("0 * * * *", Overlap::Allow, CatchUp::All, 24);
        let compiled = s.validate().unwrap_or_else(|e| panic!("{e}"));
        let mut rec = ScheduleRecord::new(s, ts("2026-11-23T10:30:00Z"));
        assert!(rec
            .tick(&compiled, ts("2026-11-23T10:30:00Z"), false)
            .is_empty());
        assert_eq!(
            rec.next_wake(&compiled, ts("2026-11-23T10:30:00Z")),
            Some(ts("2026-11-23T11:00:00Z"))
        );
    }

    #[test]
    fn history_and_runs_are_bounded() {
        let s = spec("* * * * *", Overlap::Skip, CatchUp::Skip, 24);
        let compiled = s.validate().unwrap_or_else(|e| panic!("{e}"));
        let mut rec = ScheduleRecord::new(s, ts("2026-11-23T00:00:00Z"));
        let mut now = ts("2026-11-23T00:00:00Z");
        for i in 0..300 {
            now = now.plus(Duration::from_secs(60));
            for f in rec.tick(&compiled, now, false) {
                rec.launched(f, now, &format!("r{i}"), 1);
            }
        }
        assert_eq!(rec.runs.len(), RUNS_KEPT);
        assert_eq!(rec.history.len(), HISTORY_KEPT);
        assert_eq!(rec.last_run(), Some("r299"));
    }
}
