//! A driven run's figures kept up to date by the executor as instances move:
//! instances per state, who is out of service, the lengths of ended outages,
//! who stopped and why. The daemon's `/metrics` and `/api/attention` read them
//! for a run in motion instead of decoding every instance again, so their cost
//! does not grow with the run's size.
//!
//! They are seeded once from the store beside the first calls of a drive (see
//! [`Figures::seed`]); what a worker reports first wins over the seed.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::instance::{Instance, OpenOutage, OutageSpan, Status};
use crate::metrics::{Histogram, HistogramSnapshot, OUTAGE_BUCKETS};
use crate::store::keys::instance_prefix;
use crate::store::{records, Store, StoreError};

/// What a seed reads of a stored instance.
#[derive(serde::Deserialize)]
struct Head {
    idx: u32,
    subject: String,
    status: Status,
    #[serde(default)]
    down: Option<OpenOutage>,
    #[serde(default)]
    outages: Vec<OutageSpan>,
    #[serde(default)]
    inputs: Map<String, Value>,
}

/// An instance an operator has to act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Stopped {
    /// Subject.
    pub subject: String,
    /// State name (`failed`, `rolled_back`, `needs_attention`).
    pub state: &'static str,
    /// Step index.
    pub step: usize,
    /// The message.
    pub reason: String,
    /// Its inputs (a cause lifts their values out of the message).
    pub inputs: Map<String, Value>,
}

/// States an operator has to act on: the step and the message.
pub fn needs_operator(s: &Status) -> Option<(usize, &str)> {
    match s {
        Status::NeedsAttention { step, reason, .. } => Some((*step, reason)),
        Status::Failed { step, error } | Status::RolledBack { step, error } => Some((*step, error)),
        _ => None,
    }
}

/// What is counted of one instance.
#[derive(Clone, Copy)]
struct Seen {
    state: &'static str,
    down: bool,
    outages: usize,
}

/// A run's live figures.
pub struct Figures {
    seen: HashMap<u32, Seen>,
    counts: BTreeMap<&'static str, usize>,
    down: usize,
    ended: Histogram,
    stopped: BTreeMap<u32, Stopped>,
    seeded: bool,
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Figures")
            .field("counts", &self.counts)
            .field("down", &self.down)
            .field("stopped", &self.stopped.len())
            .field("seeded", &self.seeded)
            .finish()
    }
}

impl Default for Figures {
    fn default() -> Figures {
        Figures {
            seen: HashMap::new(),
            counts: BTreeMap::new(),
            down: 0,
            ended: Histogram::new(OUTAGE_BUCKETS),
            stopped: BTreeMap::new(),
            seeded: false,
        }
    }
}

impl Figures {
    /// An instance as a worker just stored it.
    pub fn observe(&mut self, i: &Instance) {
        self.count(
            i.idx,
            &i.subject,
            &i.status,
            i.down.is_some(),
            &i.outages,
            &i.inputs,
        );
    }

    fn count(
        &mut self,
        idx: u32,
        subject: &str,
        status: &Status,
        down: bool,
        outages: &[OutageSpan],
        inputs: &Map<String, Value>,
    ) {
        let now = Seen {
            state: status.name(),
            down,
            outages: outages.len(),
        };
        let before = self.seen.insert(idx, now);
        if let Some(b) = before {
            if let Some(n) = self.counts.get_mut(b.state) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.counts.remove(b.state);
                }
            }
            self.down = self.down.saturating_sub(usize::from(b.down));
        }
        *self.counts.entry(now.state).or_insert(0) += 1;
        self.down += usize::from(now.down);
        // Spans only grow (a retry keeps them); the new ones ended since.
        let old = before.map_or(0, |b| b.outages);
        for o in outages.iter().skip(old) {
            self.ended.observe(o.end.since(o.start));
        }
        match needs_operator(status) {
            Some((step, why)) => {
                self.stopped.insert(
                    idx,
                    Stopped {
                        subject: subject.to_string(),
                        state: now.state,
                        step,
                        reason: why.to_string(),
                        inputs: inputs.clone(),
                    },
                );
            }
            None => {
                self.stopped.remove(&idx);
            }
        }
    }

    /// Read every stored instance of `run` once; those a worker already
    /// reported keep what it said. Afterwards the figures are complete.
    pub fn seed(
        this: &std::sync::Mutex<Figures>,
        store: &dyn Store,
        run: &str,
    ) -> Result<(), StoreError> {
        let mut err = None;
        store.scan_prefix(
            &instance_prefix(run),
            &mut |k, v| match records::decode::<Head>(k, v) {
                Ok(h) => {
                    let mut f = this.lock().unwrap_or_else(|p| p.into_inner());
                    if !f.seen.contains_key(&h.idx) {
                        let stopped = needs_operator(&h.status).is_some();
                        let none = Map::new();
                        f.count(
                            h.idx,
                            &h.subject,
                            &h.status,
                            h.down.is_some(),
                            &h.outages,
                            if stopped { &h.inputs } else { &none },
                        );
                    }
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = err {
            return Err(e);
        }
        this.lock().unwrap_or_else(|p| p.into_inner()).seeded = true;
        Ok(())
    }

    /// Whether the seed is in (until then the figures cover only the
    /// instances workers reported).
    pub fn complete(&self) -> bool {
        self.seeded
    }

    /// Instances per state name.
    pub fn counts(&self) -> &BTreeMap<&'static str, usize> {
        &self.counts
    }

    /// Out of service now.
    pub fn down(&self) -> usize {
        self.down
    }

    /// Lengths of the ended outages.
    pub fn ended(&self) -> HistogramSnapshot {
        self.ended.snapshot()
    }

    /// Who stopped, in index order.
    pub fn stopped(&self) -> impl Iterator<Item = &Stopped> {
        self.stopped.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::engine::instance::Phase;
    use crate::store::memory::MemoryStore;
    use crate::store::Batch;

    fn inst(idx: u32, status: Status) -> Instance {
        let mut i = Instance::new(
            "r1",
            idx,
            format!("u{idx}@contoso.com"),
            Map::new(),
            Timestamp(0),
        );
        i.status = status;
        i
    }

    #[test]
    fn moves_update_the_counts_and_the_seed_does_not_override_a_worker() {
        let store = MemoryStore::new();
        let mut b = Batch::default();
        let failed = Status::Failed {
            step: 1,
            error: "User 'u1@contoso.com' lacks a licence".into(),
        };
        for (idx, st) in [
            (0, Status::Pending),
            (1, failed.clone()),
            (2, Status::Pending),
        ] {
            records::put_new_instance(&mut b, &inst(idx, st)).expect("our records encode");
        }
        assert!(store.apply(&b).is_ok());
        let figs = std::sync::Mutex::new(Figures::default());
        // A worker reports instance 0 before the seed reads it.
        let mut moving = inst(
            0,
            Status::Running {
                step: 0,
                phase: Phase::Ready,
            },
        );
        moving.down = Some(OpenOutage {
            since: Timestamp(10),
            step: "remove".into(),
        });
        figs.lock().expect("lock").observe(&moving);
        assert!(!figs.lock().expect("lock").complete());
        assert!(Figures::seed(&figs, &store, "r1").is_ok());
        let mut f = figs.into_inner().expect("lock");
        assert!(f.complete());
        assert_eq!(f.counts().get("ready"), Some(&1));
        assert_eq!(
            f.counts().get("pending"),
            Some(&1),
            "the seed did not count 0 again"
        );
        assert_eq!(f.counts().get("failed"), Some(&1));
        assert_eq!(f.down(), 1);
        assert_eq!(f.stopped().count(), 1);
        // It comes back: one outage ended, counted once however often it is seen.
        moving.down = None;
        moving.status = Status::Succeeded;
        moving.outages.push(OutageSpan {
            start: Timestamp(10),
            end: Timestamp(70_010),
            step: "remove".into(),
            restored_by: "assign".into(),
        });
        f.observe(&moving);
        f.observe(&moving);
        assert_eq!((f.down(), f.ended().count), (0, 1));
        assert_eq!(f.counts().get("ready"), None, "no state is shown with 0");
        assert_eq!(f.counts().get("succeeded"), Some(&1));
        // A retried instance leaves the stopped list.
        f.observe(&inst(
            1,
            Status::Running {
                step: 1,
                phase: Phase::Ready,
            },
        ));
        assert_eq!(f.stopped().count(), 0);
    }
}
