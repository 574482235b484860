//! An honest ETA for a live run: from how long each step has taken the
//! subjects that went through it, not a straight line through the count done.
//! A step's sync wait dominates it ("up to 10 minutes, in rare cases up to 24
//! hours"), so the subjects in a long wait are what the run waits for.

use std::time::Duration;

/// Observed step durations on the engine clock: sum and count per step.
#[derive(Clone, Debug, Default)]
pub struct StepTimes {
    sum_ms: Vec<u64>,
    n: Vec<u32>,
}

impl StepTimes {
    /// One subject went through `step` in `took`.
    pub fn record(&mut self, step: usize, took: Duration) {
        if self.n.len() <= step {
            self.n.resize(step + 1, 0);
            self.sum_ms.resize(step + 1, 0);
        }
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.sum_ms[step] = self.sum_ms[step].saturating_add(ms);
        self.n[step] = self.n[step].saturating_add(1);
    }

    /// The mean time subjects took at `step`, once one went through it.
    pub fn mean(&self, step: usize) -> Option<Duration> {
        let n = *self.n.get(step).filter(|n| **n > 0)?;
        Some(Duration::from_millis(self.sum_ms[step] / u64::from(n)))
    }
}

/// Where one unfinished subject is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Not started.
    Pending,
    /// At a step, working or waiting for the tenant, for this long so far.
    At {
        /// Step index.
        step: usize,
        /// Time spent at it.
        since: Duration,
    },
    /// Waiting for a person (an approval, a signal, a manual task): no
    /// duration can be promised for it.
    Person,
    /// Waiting for a porting window to open.
    Window,
}

/// What the estimate can say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eta {
    /// Every step left has been timed.
    Known(Duration),
    /// At least this long: `untimed` (the first step left that no subject
    /// has gone through yet) counts as zero.
    AtLeast {
        /// Remaining time with the untimed steps at zero.
        remaining: Duration,
        /// First untimed step.
        untimed: usize,
    },
    /// No step timed yet, or nothing is moving.
    Unknown,
}

/// An ETA with what it leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// When the subjects that can move will be done (engine clock).
    pub eta: Eta,
    /// Subjects waiting for a person, not in the estimate.
    pub people: usize,
    /// Subjects waiting for a porting window, not in the estimate.
    pub window: usize,
}

impl Estimate {
    /// `, ETA ~9m` for the live display, with what it leaves out; engine
    /// durations are shown times `real_per_engine` (a time-scaled rehearsal
    /// runs the engine clock faster than real time).
    pub fn suffix<'a>(
        &self,
        step_id: impl Fn(usize) -> Option<&'a str>,
        real_per_engine: f64,
    ) -> String {
        let shown = |d: Duration| {
            crate::report::table::human_duration(Duration::from_secs_f64(
                d.as_secs_f64() * real_per_engine,
            ))
        };
        let mut out = match self.eta {
            Eta::Known(d) => format!(", ETA ~{}", shown(d)),
            Eta::AtLeast { remaining, untimed } => format!(
                ", ETA at least {} ({} not timed yet)",
                shown(remaining),
                step_id(untimed).unwrap_or("a step")
            ),
            Eta::Unknown => ", ETA unknown until a subject finishes a step".to_string(),
        };
        if self.people > 0 {
            out.push_str(&format!(
                ", {} waiting for a person (not counted)",
                self.people
            ));
        }
        if self.window > 0 {
            out.push_str(&format!(", {} waiting for a porting window", self.window));
        }
        out
    }
}

/// The ETA of `positions` for a workflow of `steps` steps. Subjects in
/// progress go on in parallel; pending ones start as slots free, at the
/// parallelism seen now.
pub fn estimate(times: &StepTimes, steps: usize, positions: &[Position]) -> Estimate {
    let mut untimed: Option<usize> = None;
    let mut remaining_from = |from: usize, spent: Duration| -> Duration {
        let mut total = Duration::ZERO;
        for s in from..steps {
            match times.mean(s) {
                Some(m) if s == from => total += m.saturating_sub(spent),
                Some(m) => total += m,
                None => {
                    untimed = Some(untimed.map_or(s, |u| u.min(s)));
                }
            }
        }
        total
    };
    let (mut people, mut window, mut pending, mut moving) = (0, 0, 0usize, 0usize);
    let mut longest = Duration::ZERO;
    let mut work = Duration::ZERO;
    for p in positions {
        match *p {
            Position::Person => people += 1,
            Position::Window => window += 1,
            Position::Pending => pending += 1,
            Position::At { step, since } => {
                let r = remaining_from(step, since);
                longest = longest.max(r);
                work += r;
                moving += 1;
            }
        }
    }
    let whole = remaining_from(0, Duration::ZERO);
    let timed_any = (0..steps).any(|s| times.mean(s).is_some());
    let eta = if !timed_any || (moving == 0 && pending > 0) {
        Eta::Unknown
    } else {
        let mut total = longest;
        if pending > 0 {
            // `moving` at once: the pending subjects' work spread over them.
            let pending_work = whole
                .checked_mul(u32::try_from(pending).unwrap_or(u32::MAX))
                .unwrap_or(Duration::MAX);
            let spread =
                work.saturating_add(pending_work) / u32::try_from(moving).unwrap_or(u32::MAX);
            total = total.max(whole).max(spread);
        }
        match untimed {
            None => Eta::Known(total),
            Some(u) => Eta::AtLeast {
                remaining: total,
                untimed: u,
            },
        }
    };
    Estimate {
        eta,
        people,
        window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn times(means: &[Option<u64>]) -> StepTimes {
        let mut t = StepTimes::default();
        for (s, m) in means.iter().enumerate() {
            if let Some(m) = m {
                // Two samples around the mean.
                t.record(s, MIN * (*m as u32) - MIN / 2);
                t.record(s, MIN * (*m as u32) + MIN / 2);
            }
        }
        t
    }

    #[test]
    fn the_long_wait_decides_not_the_count_done() {
        // Step 1 (the sync wait) takes 10 minutes; 9 of 10 subjects finished
        // quickly, one has been waiting 2 minutes: a straight line would say
        // seconds, the steps say 8 minutes plus step 2.
        let t = times(&[Some(1), Some(10), Some(1)]);
        let e = estimate(
            &t,
            3,
            &[Position::At {
                step: 1,
                since: 2 * MIN,
            }],
        );
        assert_eq!(e.eta, Eta::Known(9 * MIN));
        assert_eq!((e.people, e.window), (0, 0));
    }

    #[test]
    fn pending_subjects_share_the_slots_seen_now() {
        let t = times(&[Some(2), Some(2)]);
        let at = Position::At {
            step: 0,
            since: Duration::ZERO,
        };
        // Two moving (4 min each) and four pending (4 min each) over 2 slots: 12 min.
        let e = estimate(
            &t,
            2,
            &[
                at,
                at,
                Position::Pending,
                Position::Pending,
                Position::Pending,
                Position::Pending,
            ],
        );
        assert_eq!(e.eta, Eta::Known(12 * MIN));
    }

    #[test]
    fn untimed_steps_make_it_a_lower_bound_and_people_are_left_out() {
        let t = times(&[Some(3), None]);
        let e = estimate(
            &t,
            2,
            &[
                Position::At {
                    step: 0,
                    since: MIN,
                },
                Position::Person,
                Position::Window,
            ],
        );
        assert_eq!(
            e.eta,
            Eta::AtLeast {
                remaining: 2 * MIN,
                untimed: 1
            }
        );
        assert_eq!((e.people, e.window), (1, 1));
        let ids = ["sync", "verify"];
        assert_eq!(
            e.suffix(|i| ids.get(i).copied(), 0.5),
            ", ETA at least 1m 0s (verify not timed yet), 1 waiting for a person (not counted), \
             1 waiting for a porting window"
        );
        let none = estimate(&StepTimes::default(), 2, &[Position::Pending]);
        assert_eq!(none.eta, Eta::Unknown);
        let stuck = estimate(&t, 2, &[Position::Person, Position::Pending]);
        assert_eq!(stuck.eta, Eta::Unknown, "nothing moving: no promise");
    }

    #[test]
    fn a_subject_past_the_mean_counts_as_almost_done() {
        let t = times(&[Some(5)]);
        let e = estimate(
            &t,
            1,
            &[Position::At {
                step: 0,
                since: 20 * MIN,
            }],
        );
        assert_eq!(e.eta, Eta::Known(Duration::ZERO));
    }
}
