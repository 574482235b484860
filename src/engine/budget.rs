//! A run's out-of-service budget (`max_out_of_service`) and circuit breaker
//! (`stop_after_failures`).
//!
//! The executor keeps, per run, which instances hold a place in the budget
//! (their number is out of service, or their outage-causing action is under
//! way), which are held waiting for one, and which count as failures. All of it
//! is derived from the stored snapshots, so a restart rebuilds it exactly; the
//! only durable breaker state is in the run record (`Breaker`).

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::instance::{Instance, Phase, Status};
use super::machine::{outage_step, OutageGate};
use super::run::{Breaker, Trip};
use crate::clock::Timestamp;
use crate::spec::model::Workflow;

/// What the budget needs to know of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotView {
    /// Holds a place in the budget.
    pub holds: bool,
    /// Waits in the `held` phase for a place.
    pub held: bool,
    /// Counts against the breaker.
    pub failure: bool,
}

impl SlotView {
    /// Of a status, given whether the number is out of service now (`down`)
    /// and whether it ever was (`went_down`).
    pub fn of(wf: &Workflow, status: &Status, down: bool, went_down: bool) -> SlotView {
        let at_outage = |step: &usize| wf.steps.get(*step).is_some_and(outage_step);
        let holds = down
            || matches!(status, Status::Running {
                step,
                phase: Phase::Acting { .. } | Phase::Reconciling { .. } | Phase::Backoff { .. },
            } if at_outage(step));
        let held = matches!(
            status,
            Status::Running {
                phase: Phase::Held { .. },
                ..
            }
        );
        // A rollback after a failure counts from its start: the failure is known then.
        let failed_at = match status {
            Status::Failed { step, .. } | Status::NeedsAttention { step, .. } => Some(step),
            Status::RolledBack { step, error }
            | Status::Compensating {
                failed_step: step,
                error,
                ..
            } if !error.starts_with("cancelled:") => Some(step),
            _ => None,
        };
        let failure = failed_at.is_some_and(|s| went_down || at_outage(s));
        SlotView {
            holds,
            held,
            failure,
        }
    }

    /// Of an instance.
    pub fn of_instance(wf: &Workflow, inst: &Instance) -> SlotView {
        SlotView::of(
            wf,
            &inst.status,
            inst.down.is_some(),
            inst.down.is_some() || !inst.outages.is_empty(),
        )
    }
}

#[derive(Debug, Default)]
struct Inner {
    holders: BTreeSet<u32>,
    held: BTreeSet<u32>,
    failures: BTreeSet<u32>,
    accepted: u32,
    /// Why new outages are paused, while the breaker is open.
    open: Option<String>,
}

/// The budget and breaker of one run being driven.
#[derive(Debug)]
pub struct OutageBudget {
    max: Option<u32>,
    threshold: Option<u32>,
    inner: Mutex<Inner>,
    /// Wakes the driver when held instances may go (a `--continue`).
    pub wake: tokio::sync::Notify,
}

impl OutageBudget {
    /// A budget of `max` subjects out of service (`None`: no limit) and a
    /// breaker that opens at `threshold` failures (`None`: never), starting
    /// from the run's stored breaker state.
    pub fn new(max: Option<u32>, threshold: Option<u32>, breaker: &Breaker) -> OutageBudget {
        let inner = Inner {
            accepted: breaker.accepted,
            open: breaker
                .tripped
                .as_ref()
                .map(|t| paused_reason(t.failures, t.threshold)),
            ..Inner::default()
        };
        OutageBudget {
            max,
            threshold,
            inner: Mutex::new(inner),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record where instance `idx` is now (after every transition, and for
    /// every instance when the run is loaded). Returns the trip to store when
    /// this makes the breaker open.
    pub fn observe(&self, idx: u32, view: SlotView, now: Timestamp) -> Option<Trip> {
        let mut g = self.lock();
        set(&mut g.holders, idx, view.holds);
        set(&mut g.held, idx, view.held);
        set(&mut g.failures, idx, view.failure);
        let threshold = self.threshold?;
        let counted = (g.failures.len() as u32).saturating_sub(g.accepted);
        if g.open.is_none() && counted >= threshold {
            g.open = Some(paused_reason(counted, threshold));
            return Some(Trip {
                at: now,
                failures: counted,
                threshold,
            });
        }
        None
    }

    /// Held instances that may try again now, lowest index (list order) first:
    /// as many as there is room for. They leave the held set until they report back.
    pub fn wakeable(&self) -> Vec<u32> {
        let mut g = self.lock();
        if g.open.is_some() {
            return Vec::new();
        }
        let room = match self.max {
            Some(max) => (max as usize).saturating_sub(g.holders.len()),
            None => g.held.len(),
        };
        let mut out = Vec::new();
        while out.len() < room {
            match g.held.pop_first() {
                Some(idx) => out.push(idx),
                None => break,
            }
        }
        out
    }

    /// `resume --continue`: accept `accepted` failures (those counted so far)
    /// and close the breaker.
    pub fn resume(&self, accepted: u32) {
        let mut g = self.lock();
        g.accepted = accepted;
        g.open = None;
        drop(g);
        self.wake.notify_one();
    }

    /// Subjects holding a place in the budget now.
    pub fn holding(&self) -> usize {
        self.lock().holders.len()
    }

    /// Instances waiting in the held phase.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// `max_out_of_service`, if set.
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    /// Whether the breaker is open.
    pub fn paused(&self) -> bool {
        self.lock().open.is_some()
    }
}

/// Failures of a stored run that count against its breaker.
pub fn count_failures(
    store: &dyn crate::store::Store,
    run: &str,
    wf: &Workflow,
) -> Result<u32, crate::store::StoreError> {
    Ok(crate::store::records::list_outage_heads(store, run)?
        .iter()
        .filter(|h| SlotView::of(wf, &h.status, h.down, h.went_down).failure)
        .count() as u32)
}

fn set(s: &mut BTreeSet<u32>, idx: u32, on: bool) {
    if on {
        s.insert(idx);
    } else {
        s.remove(&idx);
    }
}

/// Why held instances wait while the breaker is open.
pub fn paused_reason(failures: u32, threshold: u32) -> String {
    format!(
        "the run is paused: {failures} subject(s) failed after going out of service \
         (stop_after_failures: {threshold}); look at them, then `portflow resume --continue <run>`"
    )
}

impl OutageGate for OutageBudget {
    fn admit(&self, idx: u32) -> Result<(), String> {
        let mut g = self.lock();
        if let Some(why) = &g.open {
            return Err(why.clone());
        }
        if g.holders.contains(&idx) {
            return Ok(());
        }
        if let Some(max) = self.max {
            if g.holders.len() >= max as usize {
                return Err(format!(
                    "out-of-service budget full: {} of {max} subjects are out of service \
                     (max_out_of_service); this one starts when one is back",
                    g.holders.len()
                ));
            }
        }
        g.holders.insert(idx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::instance::Phase;

    fn wf() -> Workflow {
        let text = r#"
name: t
version: 1
subject: user
inputs: {user: {type: upn}, number: {type: e164}}
steps:
  - id: inspect
    action: {op: get_user, args: {user: "${inputs.user}"}}
  - id: remove
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
  - id: verify
    restores_service: true
    check: {require: "true", message: x}
"#;
        match serde_yaml::from_str(text) {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn who_holds_a_place_and_who_counts_as_a_failure() {
        let w = wf();
        let acting = |step| Status::Running {
            step,
            phase: Phase::Acting {
                attempt: 1,
                key: "k".into(),
                throttled: 0,
            },
        };
        assert!(
            SlotView::of(&w, &acting(1), false, false).holds,
            "acting at the outage step"
        );
        assert!(
            !SlotView::of(&w, &acting(0), false, false).holds,
            "a read holds nothing"
        );
        assert!(SlotView::of(&w, &acting(0), true, true).holds, "down holds");
        let failed = |step| Status::Failed {
            step,
            error: "x".into(),
        };
        assert!(
            !SlotView::of(&w, &failed(0), false, false).failure,
            "refused before: harmless"
        );
        assert!(
            SlotView::of(&w, &failed(1), false, false).failure,
            "at the outage step"
        );
        assert!(
            SlotView::of(&w, &failed(2), true, true).failure,
            "after going down"
        );
        let rolling = |error: &str| Status::Compensating {
            step: 1,
            phase: Phase::Ready,
            failed_step: 2,
            error: error.into(),
            remaining: vec![],
        };
        assert!(SlotView::of(&w, &rolling("timed out"), true, true).failure);
        assert!(!SlotView::of(&w, &rolling("cancelled: ops"), true, true).failure);
        let rolled = Status::RolledBack {
            step: 2,
            error: "cancelled: ops".into(),
        };
        assert!(
            !SlotView::of(&w, &rolled, false, true).failure,
            "a cancel is no failure"
        );
    }

    #[test]
    fn the_breaker_opens_at_the_threshold_net_of_accepted_failures() {
        let b = OutageBudget::new(Some(2), Some(2), &Breaker::default());
        let fail = SlotView {
            holds: false,
            held: false,
            failure: true,
        };
        let held = SlotView {
            holds: false,
            held: true,
            failure: false,
        };
        let now = Timestamp(0);
        assert!(b.observe(1, fail, now).is_none());
        b.observe(5, held, now);
        let trip = b.observe(2, fail, now);
        assert!(matches!(
            trip,
            Some(Trip {
                failures: 2,
                threshold: 2,
                ..
            })
        ));
        assert!(b.admit(9).is_err(), "paused");
        assert!(b.wakeable().is_empty(), "nobody wakes while paused");
        b.resume(2);
        assert!(b.admit(9).is_ok());
        assert_eq!(b.wakeable(), vec![5], "one place left of 2");
        assert!(b.observe(3, fail, now).is_none(), "1 new failure of 2");
        assert!(b.observe(4, fail, now).is_some(), "2 new: open again");
    }
}
