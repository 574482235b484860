//! The executor: drives every instance of a run through the state machine.
//!
//! A timer heap (rebuilt from the store's timer index at start, so a restart
//! finds what is due without reading every instance) hands due instances to at
//! most `concurrency` workers. A worker loads the snapshot, feeds the machine,
//! commits each transition (durably before any side effect), performs the effect
//! and repeats until the instance waits or ends; its next due instant goes back
//! on the heap. Only one worker holds an instance at a time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::budget::{OutageBudget, SlotView};
use super::eta::{estimate, Estimate, Position, StepTimes};
use super::figures::Figures;
use super::instance::{Instance, Status};
use super::limiter::RateLimiter;
use super::machine::{self, Ctx, Effect, Input, Persist};
use super::space::Gates;
use crate::backend::{BackendError, Call, ErrorKind, Operation, OperationKind, Tenant};
use crate::clock::{SharedClock, Timestamp};
use crate::metrics::{self, CallKind};
use crate::spec::model::OnFailure;
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::keys::InstanceKey;
use crate::store::{records, Batch, Store, StoreError};

/// Engine failures (the run stops; state stays consistent).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An instance referenced by a timer is missing.
    #[error("instance {0:?} is in the timer index but not stored")]
    Missing(InstanceKey),
    /// A worker panicked (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where an instance is, for progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// Not started.
    Pending,
    /// At a step, in a phase (`acting`, `waiting`, …).
    Step(usize, &'static str),
    /// Finished (`succeeded`, `failed`, `needs_attention`, `cancelled`).
    Terminal(&'static str),
}

impl Place {
    /// Place of an instance.
    pub fn of(inst: &Instance) -> Place {
        Place::of_status(&inst.status)
    }

    /// Place of an instance with this status.
    pub fn of_status(status: &Status) -> Place {
        match status {
            Status::Pending => Place::Pending,
            Status::Running { step, phase } => Place::Step(*step, phase.name()),
            Status::Compensating { step, .. } => Place::Step(*step, "rolling_back"),
            s => Place::Terminal(s.name()),
        }
    }
}

/// Live counts of a run (shared with the progress display).
#[derive(Debug, Default)]
pub struct Progress {
    places: Mutex<Places>,
    /// The run's figures for the daemon's views (see [`Figures`]).
    pub figures: Mutex<Figures>,
    /// Backend calls made by this process.
    pub calls: AtomicU64,
    /// Transitions committed by this process.
    pub transitions: AtomicU64,
}

/// Where each instance is, since when it is at its step, and how long the
/// steps have taken the instances that left them (for the ETA).
#[derive(Debug, Default)]
struct Places {
    at: HashMap<u32, Place>,
    entered: HashMap<u32, (usize, Timestamp)>,
    times: StepTimes,
}

impl Progress {
    pub(super) fn set(&self, idx: u32, place: Place, now: Timestamp) {
        let mut p = self.places.lock().unwrap_or_else(|p| p.into_inner());
        let Places { at, entered, times } = &mut *p;
        at.insert(idx, place);
        let step = match place {
            Place::Step(_, "rolling_back") | Place::Pending => None,
            Place::Step(s, _) => Some(s),
            Place::Terminal("succeeded") => Some(usize::MAX),
            Place::Terminal(_) => None,
        };
        let Some(step) = step else {
            entered.remove(&idx);
            return;
        };
        match entered.get(&idx).copied() {
            Some((from, since)) if step > from => {
                times.record(from, now.since(since));
                if step == usize::MAX {
                    entered.remove(&idx);
                } else {
                    // Steps passed over (`when` false) took no time.
                    for skipped in from + 1..step {
                        times.record(skipped, Duration::ZERO);
                    }
                    entered.insert(idx, (step, now));
                }
            }
            Some(_) => {}
            None if step != usize::MAX => {
                entered.insert(idx, (step, now));
            }
            None => {}
        }
    }

    fn observe(&self, inst: &Instance) {
        self.figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(inst);
    }

    /// Count of instances per place.
    pub fn counts(&self) -> BTreeMap<Place, usize> {
        let places = self.places.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for p in places.at.values() {
            *out.entry(*p).or_insert(0) += 1;
        }
        out
    }

    /// The run's ETA at `now` (engine clock) for a workflow of `steps` steps.
    pub fn estimate(&self, steps: usize, now: Timestamp) -> Estimate {
        let p = self.places.lock().unwrap_or_else(|p| p.into_inner());
        let positions: Vec<Position> =
            p.at.iter()
                .filter_map(|(idx, place)| match place {
                    Place::Pending => Some(Position::Pending),
                    Place::Terminal(_) | Place::Step(_, "rolling_back") => None,
                    Place::Step(_, "blocked") => Some(Position::Person),
                    Place::Step(_, "window") => Some(Position::Window),
                    Place::Step(s, _) => Some(Position::At {
                        step: *s,
                        since: p
                            .entered
                            .get(idx)
                            .filter(|(at, _)| at == s)
                            .map_or(Duration::ZERO, |(_, t)| now.since(*t)),
                    }),
                })
                .collect();
        estimate(&p.times, steps, &positions)
    }
}

/// Why `drive` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveEnd {
    /// Every instance reached a terminal state.
    Finished,
    /// Nothing is due and some instances wait for approval or a signal, or
    /// are held before an outage step.
    Idle {
        /// Instances blocked at a gate.
        blocked: usize,
        /// Instances held by the out-of-service budget or the breaker.
        held: usize,
    },
    /// Asked to stop (Ctrl-C / SIGTERM); resumable.
    Stopped,
}

/// How often instances held for low disk space look again.
const SPACE_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// What a worker hands back: instance index, where it is now, when it is due
/// next, and the snapshot it left (for the hot cache).
type WorkResult = Result<(u32, Place, Option<Timestamp>, Instance), EngineError>;

/// Snapshots of instances due again soon, kept by the driver between two
/// wakes so a poll loop does not read and decode its snapshot every time. The
/// driver owns its run's instances while it drives, so the copy cannot go stale.
struct HotCache {
    map: HashMap<u32, Instance>,
}

impl HotCache {
    /// At most this many snapshots (a few MB).
    const MAX: usize = 4096;
    /// Only instances due within this much of the run's clock.
    const HORIZON_MS: i64 = 30_000;

    fn keep(&mut self, inst: Instance, now: Timestamp) {
        match inst.due {
            Some(d) if d.0 - now.0 <= Self::HORIZON_MS && self.map.len() < Self::MAX => {
                self.map.insert(inst.idx, inst);
            }
            _ => {
                self.map.remove(&inst.idx);
            }
        }
    }

    fn take(&mut self, idx: u32) -> Option<Instance> {
        self.map.remove(&idx)
    }
}

/// An operator's input (approve, signal, cancel, retry) for a run being driven.
pub struct Inbound {
    /// Instance index.
    pub idx: u32,
    /// The input.
    pub input: Input,
    /// Receives the rule that fired (`UNEXPECTED` when it did not apply).
    pub reply: tokio::sync::oneshot::Sender<Result<&'static str, EngineError>>,
}

/// Drives one run.
pub struct Driver {
    /// State store.
    pub store: Arc<dyn Store>,
    /// Group committer over `store`.
    pub committer: Committer,
    /// The run's clock.
    pub clock: SharedClock,
    /// The tenant.
    pub tenant: Arc<dyn Tenant>,
    /// Run id.
    pub run_id: String,
    /// Pinned workflow.
    pub workflow: Arc<Workflow>,
    /// Gates approved in the run file.
    pub approvals: Vec<String>,
    /// The run file's failure policy, overriding the workflows' own.
    pub on_failure: Option<OnFailure>,
    /// Operations the tenant cannot automate (they become manual tasks).
    pub manual_ops: Vec<OperationKind>,
    /// The run's porting window.
    pub window: Option<Arc<dyn super::machine::WindowCalendar>>,
    /// Workers at once.
    pub concurrency: usize,
    /// Call pacing.
    pub limiter: Option<Arc<RateLimiter>>,
    /// How long one backend call may take on the run's clock; past it the call
    /// is a transient failure whose outcome is unknown (run file `call_timeout`).
    pub call_timeout: std::time::Duration,
    /// The run's out-of-service budget and breaker, when the run file sets one.
    pub budget: Option<Arc<OutageBudget>>,
    /// The free-space guard (`--min-free`), asked before the budget.
    pub space: Option<Arc<super::space::SpaceGuard>>,
    /// Live counts.
    pub progress: Arc<Progress>,
}

impl Driver {
    /// Run until every instance is terminal, nothing is due, or `stop` turns true.
    pub async fn drive(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> Result<DriveEnd, EngineError> {
        self.drive_with_inbox(stop, None).await
    }

    /// Like [`Driver::drive`], also applying operator inputs from `inbox`. While the
    /// inbox is open the driver does not return when only blocked instances remain
    /// (a daemon keeps waiting for approvals and signals).
    pub async fn drive_with_inbox(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut inbox: Option<tokio::sync::mpsc::Receiver<Inbound>>,
    ) -> Result<DriveEnd, EngineError> {
        // Statuses only feed the progress counts: they are read beside the first
        // calls rather than before them, so a restart polls as soon as its timers
        // are armed. Until the scan is in, the driver does not decide it is done.
        let mut statuses = Some({
            let (store, run) = (self.store.clone(), self.run_id.clone());
            tokio::task::spawn_blocking(move || records::list_statuses(&*store, &run))
        });
        // The daemon's figures: seeded once, then kept by the workers. Nobody
        // waits for it; until it is in, the daemon reads the store instead.
        {
            let (store, run, progress) = (
                self.store.clone(),
                self.run_id.clone(),
                self.progress.clone(),
            );
            tokio::task::spawn_blocking(move || {
                if let Err(e) = Figures::seed(&progress.figures, &*store, &run) {
                    tracing::warn!(run = %run, error = %e, "cannot read the run's figures; the daemon reads the store instead");
                }
            });
        }
        let mut heap: BinaryHeap<Reverse<(Timestamp, u32)>> =
            records::run_timers(&*self.store, &self.run_id)?
                .into_iter()
                .map(Reverse)
                .collect();
        if let Some(budget) = &self.budget {
            // Who is out of service must be known before anyone else may go.
            if let Some(scan) = statuses.take() {
                self.fill_places(scan.await)?;
            }
            self.load_budget(budget).await?;
            self.wake_held(budget, &mut heap);
        }
        let mut workers: JoinSet<WorkResult> = JoinSet::new();
        // A worker owns its instance; inputs for it wait until it is done.
        let mut in_flight: std::collections::HashSet<u32> = std::collections::HashSet::new();
        // Instances due again while a worker still held them (a held one woken
        // as it reported back): they run once more when the worker is done.
        let mut again: std::collections::HashSet<u32> = std::collections::HashSet::new();
        let mut parked: HashMap<u32, Vec<Inbound>> = HashMap::new();
        let mut hot = HotCache {
            map: HashMap::new(),
        };
        let mut stop_alive = true;
        let limit = self.concurrency.max(1);
        loop {
            let now = self.clock.now();
            if let Some(space) = &self.space {
                for idx in space.wakeable() {
                    heap.push(Reverse((now, idx)));
                }
            }
            while workers.len() < limit {
                match heap.peek() {
                    Some(Reverse((due, _))) if *due <= now => {
                        if let Some(Reverse((due, idx))) = heap.pop() {
                            // A stale duplicate entry: the worker reports the real due time.
                            if in_flight.insert(idx) {
                                let me = self.clone();
                                let cached = hot.take(idx);
                                workers.spawn(async move { me.work(idx, due, cached).await });
                            } else {
                                again.insert(idx);
                            }
                        }
                    }
                    _ => break,
                }
            }
            if workers.is_empty() && heap.is_empty() {
                if let Some(scan) = statuses.take() {
                    self.fill_places(scan.await)?;
                    continue;
                }
                let counts = self.progress.counts();
                let blocked = counts
                    .iter()
                    .filter(|(p, _)| matches!(p, Place::Step(_, "blocked")))
                    .map(|(_, n)| *n)
                    .sum();
                let held = counts
                    .iter()
                    .filter(|(p, _)| matches!(p, Place::Step(_, "held")))
                    .map(|(_, n)| *n)
                    .sum();
                let open: usize = counts
                    .iter()
                    .filter(|(p, _)| !matches!(p, Place::Terminal(_)))
                    .map(|(_, n)| *n)
                    .sum();
                // With an inbox, blocked instances may still get their approval or signal.
                if open == 0 || inbox.is_none() {
                    self.committer.barrier().await?;
                    return Ok(if open == 0 {
                        DriveEnd::Finished
                    } else {
                        DriveEnd::Idle { blocked, held }
                    });
                }
            }
            let next_due = heap.peek().map(|r| r.0 .0);
            let can_start = workers.len() < limit;
            tokio::select! {
                biased;
                changed = stop.changed(), if stop_alive => {
                    if changed.is_err() {
                        stop_alive = false;
                    } else if *stop.borrow() {
                        // Dropping in-flight calls is safe: each has its intent recorded
                        // and is reconciled on resume, exactly as after a crash.
                        workers.abort_all();
                        while workers.join_next().await.is_some() {}
                        self.committer.barrier().await?;
                        return Ok(DriveEnd::Stopped);
                    }
                }
                scan = join_opt(&mut statuses), if statuses.is_some() => {
                    statuses = None;
                    self.fill_places(scan)?;
                }
                msg = recv_opt(&mut inbox), if inbox.is_some() => match msg {
                    None => inbox = None,
                    Some(m) if in_flight.contains(&m.idx) => parked.entry(m.idx).or_default().push(m),
                    Some(m) => {
                        let idx = m.idx;
                        if let Some(due) = self.apply_inbound(m, &mut hot).await? {
                            heap.push(Reverse((due, idx)));
                        }
                    }
                },
                _ = wake_opt(self.budget.as_deref()), if self.budget.is_some() => {
                    if let Some(budget) = &self.budget {
                        self.wake_held(budget, &mut heap);
                    }
                }
                // Free space is real, not the run's clock: look again every few seconds.
                _ = crate::clock::wait_real(SPACE_RECHECK), if self.space.as_ref().is_some_and(|g| g.held() > 0) => {
                    if let Some(space) = &self.space {
                        let now = self.clock.now();
                        for idx in space.wakeable() {
                            heap.push(Reverse((now, idx)));
                        }
                    }
                }
                Some(res) = workers.join_next(), if !workers.is_empty() => {
                    match res {
                        Ok(Ok((idx, place, due, inst))) => {
                            in_flight.remove(&idx);
                            hot.keep(inst, self.clock.now());
                            self.progress.set(idx, place, self.clock.now());
                            if let Some(d) = due {
                                heap.push(Reverse((d, idx)));
                            }
                            if again.remove(&idx) {
                                heap.push(Reverse((self.clock.now(), idx)));
                            }
                            if let Some(budget) = &self.budget {
                                self.wake_held(budget, &mut heap);
                            }
                            for m in parked.remove(&idx).unwrap_or_default() {
                                if let Some(due) = self.apply_inbound(m, &mut hot).await? {
                                    heap.push(Reverse((due, idx)));
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            workers.abort_all();
                            while workers.join_next().await.is_some() {}
                            return Err(e);
                        }
                        Err(e) if e.is_panic() => {
                            workers.abort_all();
                            while workers.join_next().await.is_some() {}
                            return Err(EngineError::Internal(format!("worker panicked: {e}")));
                        }
                        Err(_) => {}
                    }
                }
                _ = sleep_opt(&self.clock, next_due), if can_start && next_due.is_some() => {}
            }
        }
    }

    /// Rebuild the budget from the stored snapshots (after a start or a restart).
    async fn load_budget(&self, budget: &Arc<OutageBudget>) -> Result<(), EngineError> {
        let (store, run) = (self.store.clone(), self.run_id.clone());
        let heads = tokio::task::spawn_blocking(move || records::list_outage_heads(&*store, &run))
            .await
            .map_err(|e| EngineError::Internal(format!("the outage scan failed: {e}")))??;
        let now = self.clock.now();
        let mut trip = None;
        for h in heads {
            let view = SlotView::of(&self.workflow, &h.status, h.down, h.went_down);
            trip = budget.observe(h.idx, view, now).or(trip);
        }
        if let Some(t) = trip {
            // The process stopped between the failure and storing the trip.
            self.store_trip(t).await?;
        }
        Ok(())
    }

    /// Put held instances back on the heap, as many as the budget has room for.
    fn wake_held(&self, budget: &OutageBudget, heap: &mut BinaryHeap<Reverse<(Timestamp, u32)>>) {
        let now = self.clock.now();
        for idx in budget.wakeable() {
            heap.push(Reverse((now, idx)));
        }
    }

    /// Store that the breaker opened (durably: the pause survives a crash).
    async fn store_trip(&self, trip: super::run::Trip) -> Result<(), EngineError> {
        let Some(mut record) = records::get_run(&*self.store, &self.run_id)? else {
            return Ok(());
        };
        if record.breaker.tripped.is_some() {
            return Ok(());
        }
        tracing::warn!(
            run = %self.run_id,
            failures = trip.failures,
            threshold = trip.threshold,
            "circuit breaker open: new outage steps are paused"
        );
        record.breaker.tripped = Some(trip);
        let mut b = Batch::default();
        records::put_run(&mut b, &record)?;
        self.committer.commit(b).await?;
        Ok(())
    }

    /// `resume --continue` on a run being driven: accept the failures so far,
    /// close the breaker (durably), and let held instances go.
    pub async fn continue_breaker(&self, by: &str) -> Result<u32, EngineError> {
        // Count from the store: every counted failure is committed there.
        let accepted = super::budget::count_failures(&*self.store, &self.run_id, &self.workflow)?;
        if let Some(b) = &self.budget {
            b.resume(accepted);
        }
        if let Some(mut record) = records::get_run(&*self.store, &self.run_id)? {
            record.breaker.accepted = accepted;
            record.breaker.tripped = None;
            record.breaker.continued.push(super::run::Continued {
                at: self.clock.now(),
                by: by.to_string(),
                accepted,
            });
            let mut b = Batch::default();
            records::put_run(&mut b, &record)?;
            self.committer.commit(b).await?;
        }
        Ok(accepted)
    }

    /// Record the places the status scan found, where no worker has been yet.
    fn fill_places(
        &self,
        scan: Result<Result<Vec<(u32, Status)>, StoreError>, tokio::task::JoinError>,
    ) -> Result<(), EngineError> {
        let statuses =
            scan.map_err(|e| EngineError::Internal(format!("the status scan failed: {e}")))??;
        let mut places = self
            .progress
            .places
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (idx, status) in &statuses {
            places
                .at
                .entry(*idx)
                .or_insert_with(|| Place::of_status(status));
            // Held for space before a restart: the guard wakes them when there is room.
            if let (
                Some(space),
                Status::Running {
                    phase: super::instance::Phase::Held { reason },
                    ..
                },
            ) = (&self.space, status)
            {
                if reason.starts_with(super::space::REASON_PREFIX) {
                    space.note_held(*idx);
                }
            }
        }
        Ok(())
    }

    /// The gates asked before an outage step.
    fn gates(&self) -> Gates<'_> {
        Gates {
            space: self.space.as_deref(),
            budget: self
                .budget
                .as_deref()
                .map(|b| b as &dyn super::machine::OutageGate),
        }
    }

    /// The transition context at this instant.
    fn ctx<'a>(&'a self, gates: &'a Gates<'a>) -> Ctx<'a> {
        Ctx {
            wf: &self.workflow,
            run_approvals: &self.approvals,
            on_failure: self.on_failure,
            manual_ops: &self.manual_ops,
            window: self.window.as_deref(),
            outages: gates
                .any()
                .then_some(gates as &dyn super::machine::OutageGate),
            now: self.clock.now(),
        }
    }

    /// Apply an operator input to an instance no worker holds; returns its new due time.
    async fn apply_inbound(
        &self,
        m: Inbound,
        hot: &mut HotCache,
    ) -> Result<Option<Timestamp>, EngineError> {
        let key = InstanceKey {
            run: self.run_id.clone(),
            idx: m.idx,
        };
        let loaded = match hot.take(m.idx) {
            Some(i) => Ok(Some(i)),
            None => records::get_instance(&*self.store, &key),
        };
        let inst = match loaded {
            Ok(Some(i)) => i,
            Ok(None) => {
                let _ = m.reply.send(Err(EngineError::Missing(key)));
                return Ok(None);
            }
            Err(e) => {
                let _ = m.reply.send(Err(EngineError::Internal(e.to_string())));
                return Err(e.into());
            }
        };
        let gates = self.gates();
        let ctx = self.ctx(&gates);
        let t = machine::transition(ctx, &inst, m.input);
        // Operator inputs carry no effect: they make the instance due instead.
        if let Err(e) = self.persist(inst.due, &t).await {
            let _ = m.reply.send(Err(EngineError::Internal(e.to_string())));
            return Err(e.into());
        }
        self.progress
            .set(m.idx, Place::of(&t.next), self.clock.now());
        self.progress.observe(&t.next);
        self.observe_budget(&t.next).await?;
        let _ = m.reply.send(Ok(t.rule));
        let due = t.next.due;
        hot.keep(t.next, self.clock.now());
        Ok(due)
    }

    /// Feed one instance until it waits or ends; returns its place and next due
    /// instant. `fired` is the timer that woke it.
    async fn work(&self, idx: u32, fired: Timestamp, cached: Option<Instance>) -> WorkResult {
        let key = InstanceKey {
            run: self.run_id.clone(),
            idx,
        };
        let mut inst = match cached {
            Some(i) => i,
            None => records::get_instance(&*self.store, &key)?
                .ok_or_else(|| EngineError::Missing(key.clone()))?,
        };
        let slot = |t: Timestamp| crate::store::keys::timer_slot(t.0);
        if inst.due.map(slot) != Some(slot(fired)) {
            // A timer the snapshot does not know (a wake for a due time since
            // moved, or a key left by an older version): drop it. This worker
            // alone writes this instance, and its own key is in another slot.
            let mut b = Batch::default();
            b.delete(crate::store::keys::timer_of(fired.0, &key));
            self.committer.commit_lazy(b)?;
        }
        let mut input = Input::Tick;
        let gates = self.gates();
        loop {
            let old_due = inst.due;
            let t = if self.limiter.is_some() {
                let t = machine::transition(self.ctx(&gates), &inst, input.clone());
                if matches!(t.effect, Some(Effect::Invoke(_))) {
                    // Wait for the call's turn before its intent is recorded: a stop
                    // while waiting must not leave an intent for a call never made.
                    self.pace().await;
                    machine::transition_owned(self.ctx(&gates), inst, input)
                } else {
                    t
                }
            } else {
                machine::transition_owned(self.ctx(&gates), inst, input)
            };
            self.persist(old_due, &t).await?;
            inst = t.next;
            self.progress.set(idx, Place::of(&inst), self.clock.now());
            self.progress.observe(&inst);
            self.observe_budget(&inst).await?;
            input = match t.effect {
                None => return Ok((idx, Place::of(&inst), inst.due, inst)),
                Some(Effect::Invoke(call)) => {
                    if self.limiter.is_none() {
                        self.progress.calls.fetch_add(1, Ordering::Relaxed);
                    }
                    let answer = self.call(&call).await;
                    count_call(&call.op, CallKind::Action, &answer);
                    match answer {
                        Ok(v) => Input::ActionOk(v),
                        // The intent is recorded: reconcile as after a crash.
                        Err(Missed::Deadline(e)) => Input::ActionTimedOut(e),
                        Err(Missed::Failed(e)) => Input::ActionErr(e),
                    }
                }
                Some(Effect::Observe(op)) => {
                    self.pace().await;
                    let call = Call::observation(op);
                    let answer = self.call(&call).await;
                    count_call(&call.op, CallKind::Poll, &answer);
                    match answer {
                        Ok(v) => Input::Observed(v),
                        // A read changes nothing: a late one is an ordinary transient error.
                        Err(Missed::Deadline(e) | Missed::Failed(e)) => Input::ObserveErr(e),
                    }
                }
            };
        }
    }

    /// One backend call under its deadline. Dropping the call's future at the
    /// deadline frees the worker; a real backend's request is cancelled with it.
    async fn call(&self, call: &Call) -> Result<serde_json::Value, Missed> {
        tokio::select! {
            answer = self.tenant.execute(call) => answer.map_err(|e| {
                // A host that died mid-request: reconcile as after a deadline.
                if e.outcome_unknown { Missed::Deadline(e) } else { Missed::Failed(e) }
            }),
            () = self.clock.call_deadline(self.call_timeout) => {
                tracing::warn!(
                    run = %self.run_id,
                    op = call.op.kind().info().name,
                    key = call.key.as_deref().unwrap_or(""),
                    timeout = %humantime::format_duration(self.call_timeout),
                    "backend call passed its deadline"
                );
                Err(Missed::Deadline(BackendError::new(
                    ErrorKind::Transient,
                    format!(
                        "no answer within {}; outcome unknown",
                        humantime::format_duration(self.call_timeout)
                    ),
                )))
            }
        }
    }

    /// Tell the budget where an instance is after a committed transition.
    async fn observe_budget(&self, inst: &Instance) -> Result<(), EngineError> {
        if let Some(b) = &self.budget {
            let view = SlotView::of_instance(&self.workflow, inst);
            if let Some(trip) = b.observe(inst.idx, view, self.clock.now()) {
                self.store_trip(trip).await?;
            }
        }
        Ok(())
    }

    async fn pace(&self) {
        self.progress.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
    }

    async fn persist(
        &self,
        old_due: Option<Timestamp>,
        t: &machine::Transition,
    ) -> Result<(), StoreError> {
        if t.persist == Persist::Nothing {
            return Ok(());
        }
        let mut b = Batch::default();
        records::put_transition_from(&mut b, old_due, t)?;
        self.progress.transitions.fetch_add(1, Ordering::Relaxed);
        match t.persist {
            Persist::Durable => self.committer.commit(b).await,
            _ => self.committer.commit_lazy(b),
        }
    }
}

/// How a call under a deadline did not answer.
enum Missed {
    /// The backend answered with an error.
    Failed(BackendError),
    /// No answer before the deadline (a transient error, outcome unknown).
    Deadline(BackendError),
}

/// Metrics: one tenant call and how it ended.
fn count_call<T>(op: &Operation, kind: CallKind, answer: &Result<T, Missed>) {
    let outcome = match answer {
        Ok(_) => "ok",
        Err(Missed::Deadline(_)) => "timeout",
        Err(Missed::Failed(e)) => e.kind.as_str(),
    };
    metrics::global().backend_call(op.kind().info().name, kind, outcome);
}

async fn join_opt<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn wake_opt(budget: Option<&OutageBudget>) {
    match budget {
        Some(b) => b.wake.notified().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(inbox: &mut Option<tokio::sync::mpsc::Receiver<Inbound>>) -> Option<Inbound> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(clock: &SharedClock, t: Option<Timestamp>) {
    match t {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod hot_cache_tests {
    use super::*;

    fn inst(idx: u32, due: Option<i64>) -> Instance {
        let mut i = Instance::new(
            "r",
            idx,
            format!("u{idx}"),
            Default::default(),
            Timestamp(0),
        );
        i.due = due.map(Timestamp);
        i
    }

    #[test]
    fn keeps_only_instances_due_soon_and_at_most_max() {
        let now = Timestamp(1_000_000);
        let mut hot = HotCache {
            map: HashMap::new(),
        };
        hot.keep(inst(1, Some(now.0 + 100)), now);
        hot.keep(inst(2, Some(now.0 + HotCache::HORIZON_MS + 1)), now);
        hot.keep(inst(3, None), now);
        assert!(hot.take(1).is_some(), "due in 100 ms: kept");
        assert!(hot.take(1).is_none(), "a take removes it");
        assert!(hot.take(2).is_none() && hot.take(3).is_none());
        // An instance leaving the horizon drops its older copy.
        hot.keep(inst(4, Some(now.0)), now);
        hot.keep(inst(4, None), now);
        assert!(hot.take(4).is_none());
        for i in 0..HotCache::MAX as u32 + 10 {
            hot.keep(inst(i, Some(now.0)), now);
        }
        assert_eq!(hot.map.len(), HotCache::MAX);
    }
}
