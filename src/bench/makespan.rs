//! Benchmark 3: wave makespan.
//!
//! N subjects on the DR → OC workflow against the simulator's realistic latency
//! model (30 s – 10 min, 2 % up to 24 h, directory sync every 30 min, operator
//! uploads 15 min – 2 h after the number leaves) with a throttle limit, on a
//! [`VirtualClock`]: the engine paces its calls at the limit and time jumps
//! whenever the engine is idle, so a day-long wave runs in seconds of real time.
//!
//! The lower bound is the larger of (a) the longest sum of sync delays of one
//! subject and (b) all calls at the rate limit. A subject's sync delay in a wait
//! is taken as the time from the start of the wait to its last poll that did
//! not see the change yet, which never exceeds the true delay, so the bound is a
//! true lower bound. The same per-wait delays give the calls a fixed 30-second
//! poll would have made (one poll per 30 s until the change is seen, at least one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::tenants::{Call, CountingTenant};
use super::vclock::{run_virtual, VirtualClock};
use super::{machine, machine_line, round, thousands, BenchError, Report, WorkDir};
use crate::backend::sim::{FaultConfig, SimConfig, SimTenant};
use crate::backend::Tenant;
use crate::clock::{SharedClock, Stopwatch, Timestamp};
use crate::engine::executor::{DriveEnd, Driver, Progress};
use crate::engine::instance::{Event, EventKind, Instance};
use crate::engine::limiter::RateLimiter;
use crate::report::table::{human_duration, Table};
use crate::store::commit::Committer;
use crate::store::sled_store::SledStore;
use crate::store::{records, Store};

/// Virtual start of the wave: a Monday evening.
pub const WAVE_START: Timestamp = Timestamp(1_795_464_000_000); // 2026-11-23T20:00:00Z

/// The fixed poll interval the adaptive polling is compared with.
pub const FIXED_POLL: Duration = Duration::from_secs(30);

/// Parameters.
#[derive(Clone, Debug)]
pub struct MakespanOpts {
    /// Subjects (users) in the wave.
    pub subjects: u32,
    /// The tenant's throttle limit, and the engine's rate limit (calls per second).
    pub rate: u32,
    /// Executor workers.
    pub concurrency: usize,
    /// Simulator seed.
    pub seed: u64,
    /// Scratch directory (default: /dev/shm when present; fsync speed does not
    /// change virtual time, only how long the benchmark takes).
    pub dir: Option<PathBuf>,
    /// Keep the scratch stores.
    pub keep: bool,
}

impl Default for MakespanOpts {
    fn default() -> Self {
        MakespanOpts {
            subjects: 10_000,
            rate: 20,
            concurrency: 50,
            seed: 42,
            dir: None,
            keep: false,
        }
    }
}

/// The figures of one wave.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Subjects.
    pub subjects: u32,
    /// First instant to last instance finished (virtual).
    pub makespan: Duration,
    /// Longest sum of sync delays of one subject.
    pub bound_sync: Duration,
    /// All calls at the rate limit.
    pub bound_rate: Duration,
    /// Backend calls made.
    pub calls: u64,
    /// Calls a fixed 30-second poll would have made for the same delays.
    pub fixed_poll_calls: u64,
    /// Throttled answers from the tenant.
    pub throttled: u64,
    /// Final states and their counts.
    pub outcomes: Vec<(String, usize)>,
    /// When the subject with the longest sync delays started and ended (from the wave start).
    pub critical: (Duration, Duration),
    /// Where that subject's time went.
    pub critical_parts: CriticalParts,
    /// Real seconds the benchmark took (engine CPU and I/O; virtual time is free).
    pub real_seconds: f64,
    /// Times the virtual clock jumped.
    pub jumps: u64,
}

impl Figures {
    /// The larger bound.
    pub fn bound(&self) -> Duration {
        self.bound_sync.max(self.bound_rate)
    }
    /// Makespan over the lower bound.
    pub fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.bound().as_secs_f64().max(1e-9)
    }
    /// Calls per subject.
    pub fn calls_per_subject(&self) -> f64 {
        self.calls as f64 / f64::from(self.subjects.max(1))
    }
    /// Calls per subject with a fixed 30-second poll.
    pub fn fixed_calls_per_subject(&self) -> f64 {
        self.fixed_poll_calls as f64 / f64::from(self.subjects.max(1))
    }
    /// Our calls as a share of the fixed poll's.
    pub fn call_share(&self) -> f64 {
        self.calls as f64 / (self.fixed_poll_calls as f64).max(1.0)
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "subjects": self.subjects,
            "makespan_s": self.makespan.as_secs(),
            "bound_sync_s": self.bound_sync.as_secs(),
            "bound_rate_s": self.bound_rate.as_secs(),
            "makespan_over_bound": round(self.ratio(), 4),
            "calls": self.calls,
            "calls_per_subject": round(self.calls_per_subject(), 2),
            "fixed_30s_poll_calls_per_subject": round(self.fixed_calls_per_subject(), 2),
            "calls_vs_fixed_30s_poll": round(self.call_share(), 4),
            "throttled": self.throttled,
            "outcomes": self.outcomes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "critical_subject_start_s": self.critical.0.as_secs(),
            "critical_subject_end_s": self.critical.1.as_secs(),
            "critical_before_first_call_s": self.critical_parts.before_first_call.as_secs(),
            "critical_sync_s": self.critical_parts.sync.as_secs(),
            "critical_detection_s": self.critical_parts.detection.as_secs(),
            "critical_other_s": self.critical_parts.other.as_secs(),
            "real_seconds": round(self.real_seconds, 2),
            "clock_jumps": self.jumps,
        })
    }
}

/// Where the critical subject's time went, from the wave start to its end.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CriticalParts {
    /// Wave start → its first call (its turn in the queue of first calls).
    pub before_first_call: Duration,
    /// Sum of its sync delays (the lower bound's part).
    pub sync: Duration,
    /// Sum over its waits of last unseen look → the look that saw the change
    /// (poll interval plus time queued for a call slot).
    pub detection: Duration,
    /// The rest: its actions and checks, and their queueing for call slots.
    pub other: Duration,
}

/// Where scratch stores go when no directory is given.
pub fn default_base(dir: Option<&Path>) -> Option<PathBuf> {
    match dir {
        Some(d) => Some(d.to_path_buf()),
        None => {
            let shm = Path::new("/dev/shm");
            shm.is_dir().then(|| shm.to_path_buf())
        }
    }
}

/// Subjects of a seeded tenant: (user, number, location id).
fn subjects(sim: &SimTenant) -> Result<Vec<(String, String, String)>, BenchError> {
    let mut csv_bytes = Vec::new();
    sim.export_subjects_csv(&mut csv_bytes)?;
    let mut rows = Vec::new();
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    for rec in reader.records() {
        let rec = rec.map_err(|e| BenchError::new(format!("subjects: {e}")))?;
        let field = |i: usize| rec.get(i).unwrap_or("").to_string();
        rows.push((field(0), field(1), field(2)));
    }
    Ok(rows)
}

/// Run one wave and measure it.
pub fn measure(opts: &MakespanOpts) -> Result<Figures, BenchError> {
    let base = default_base(opts.dir.as_deref());
    let work = WorkDir::new(base.as_deref(), "makespan", opts.keep)?;
    let clock = VirtualClock::new(WAVE_START);
    let shared: SharedClock = clock.clone();
    let cfg = SimConfig {
        seed: opts.seed,
        users: opts.subjects,
        faults: FaultConfig {
            throttle_limit: Some(opts.rate.max(1)),
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    let sim = Arc::new(SimTenant::open(
        &work.path().join("sim"),
        &cfg,
        shared.clone(),
    )?);
    let rows = subjects(&sim)?;
    let store = Arc::new(SledStore::open(&work.path().join("engine"))?);
    let committer = Committer::start(store.clone(), true);
    let text = crate::spec::builtin::workflow_text("direct-routing-to-operator-connect")
        .ok_or_else(|| BenchError::new("the built-in DR → OC workflow is missing"))?;
    let wf = crate::spec::parse_workflow(text, "builtin:direct-routing-to-operator-connect")?;
    let workflow = Arc::new(crate::spec::compose(&wf.workflow, &[]));
    let counting = Arc::new(CountingTenant::new(sim.clone(), shared.clone(), true));
    let manual_ops = crate::backend::OperationKind::ALL
        .iter()
        .copied()
        .filter(|k| !counting.automates(*k))
        .collect();
    let driver = Arc::new(Driver {
        store: store.clone() as Arc<dyn Store>,
        committer: committer.clone(),
        clock: shared.clone(),
        tenant: counting.clone(),
        run_id: "wave".into(),
        workflow,
        approvals: vec!["operator-coordinated".into()],
        on_failure: None,
        manual_ops,
        window: None,
        concurrency: opts.concurrency,
        limiter: Some(Arc::new(RateLimiter::new(
            shared.clone(),
            f64::from(opts.rate.max(1)),
        ))),
        call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
        budget: None,
        space: None,
        progress: Arc::new(Progress::default()),
    });

    let waiting = committer.clone();
    let inflight = counting.inflight.clone();
    let busy = move || waiting.stats().waiting.load(Ordering::SeqCst) > 0 || inflight.get() > 0;
    let watch = Stopwatch::start();
    let d = driver.clone();
    let c = committer.clone();
    let n = opts.subjects;
    let end = run_virtual(clock.clone(), busy, async move {
        let inputs = |i: u32| {
            let (user, number, loc) = &rows[i as usize];
            let mut m = serde_json::Map::new();
            m.insert("user".into(), json!(user));
            m.insert("number".into(), json!(number));
            let loc = if loc.is_empty() {
                Value::Null
            } else {
                json!(loc)
            };
            m.insert("location_id".into(), loc);
            // The simulated operator leaves the address to the tenant.
            m.insert("address_mode".into(), json!("tenant_assigns"));
            m
        };
        let count = n.min(rows.len() as u32);
        super::transitions::create_instances(&c, "wave", count, WAVE_START, inputs, |i| {
            rows[i as usize].0.clone()
        })
        .await?;
        let (_stop_tx, stop_rx) = watch::channel(false);
        let end = d.drive(stop_rx).await?;
        Ok::<DriveEnd, BenchError>(end)
    })??;
    let real_seconds = watch.elapsed().as_secs_f64();
    if end != DriveEnd::Finished {
        return Err(BenchError::new(format!(
            "the wave ended {end:?} (instances wait for a person?)"
        )));
    }
    let log = counting.take_log();
    let instances = records::list_instances(&*store, "wave")?;
    let mut analysis = Analysis::default();
    for inst in &instances {
        let events = records::list_events(&*store, &inst.key())?;
        analysis.add(inst, &events, &log);
    }
    let calls = counting.calls();
    let mut outcomes: Vec<(String, usize)> = analysis.outcomes.into_iter().collect();
    outcomes.sort();
    Ok(Figures {
        subjects: instances.len() as u32,
        makespan: analysis.last_end.since(WAVE_START),
        bound_sync: analysis.max_sync,
        bound_rate: Duration::from_secs_f64(calls as f64 / f64::from(opts.rate.max(1))),
        calls,
        fixed_poll_calls: analysis.fixed_calls,
        throttled: sim.stats().throttled,
        outcomes,
        critical: analysis.critical,
        critical_parts: analysis.critical_parts,
        real_seconds,
        jumps: clock.jumps(),
    })
}

/// Per-subject accounting of one finished wave.
#[derive(Default)]
struct Analysis {
    last_end: Timestamp,
    max_sync: Duration,
    critical: (Duration, Duration),
    critical_parts: CriticalParts,
    fixed_calls: u64,
    outcomes: HashMap<String, usize>,
}

impl Analysis {
    fn add(&mut self, inst: &Instance, events: &[Event], log: &HashMap<String, Vec<Call>>) {
        *self
            .outcomes
            .entry(inst.status.name().to_string())
            .or_insert(0) += 1;
        let start = events.first().map_or(WAVE_START, |e| e.at);
        let end = events.last().map_or(WAVE_START, |e| e.at);
        self.last_end = self.last_end.max(end);
        // Every call this subject caused, by its user and its number. The limiter
        // gives each call its own instant, so a wait's polls are the reads after
        // its start (the call that started it, or the poll that ended the step
        // before, happened at the start itself).
        let mut calls: Vec<Call> = Vec::new();
        for key in inst.inputs.values().filter_map(Value::as_str) {
            if let Some(c) = log.get(key) {
                calls.extend(c.iter().copied());
            }
        }
        calls.sort_by_key(|c| c.at);
        let polls_in = |from: Timestamp, to: Timestamp| {
            calls
                .iter()
                .filter(|c| c.observation && c.at > from && c.at <= to)
                .count() as u64
        };
        let mut sync = Duration::ZERO;
        let mut detection = Duration::ZERO;
        let mut polls = 0u64;
        let mut fixed_polls = 0u64;
        let mut open: Option<(String, Timestamp)> = None;
        for ev in events {
            match &ev.kind {
                EventKind::WaitStarted { step, .. } => open = Some((step.clone(), ev.at)),
                EventKind::WaitSatisfied { step, .. } | EventKind::WaitTimedOut { step, .. } => {
                    let Some((s, from)) = open.take() else {
                        continue;
                    };
                    if &s != step {
                        continue;
                    }
                    let timed_out = matches!(ev.kind, EventKind::WaitTimedOut { .. });
                    // The last look that did not see the change (the deadline when it never came).
                    let seen_by = if timed_out {
                        ev.at
                    } else {
                        calls
                            .iter()
                            .filter(|c| c.observation && c.at > from && c.at < ev.at)
                            .map(|c| c.at)
                            .max()
                            .unwrap_or(from)
                    };
                    let delay = seen_by.since(from);
                    sync += delay;
                    detection += ev.at.since(seen_by);
                    polls += polls_in(from, ev.at);
                    let fixed = delay.as_millis().div_ceil(FIXED_POLL.as_millis()) as u64;
                    fixed_polls += fixed.max(1);
                }
                _ => {}
            }
        }
        let others = (calls.len() as u64).saturating_sub(polls);
        self.fixed_calls += others + fixed_polls;
        if sync >= self.max_sync {
            self.max_sync = sync;
            self.critical = (start.since(WAVE_START), end.since(WAVE_START));
            let first = calls.first().map_or(start, |c| c.at);
            let before_first_call = first.since(WAVE_START);
            let other = end
                .since(WAVE_START)
                .saturating_sub(before_first_call + sync + detection);
            self.critical_parts = CriticalParts {
                before_first_call,
                sync,
                detection,
                other,
            };
        }
    }
}

/// Run the benchmark and build its report.
pub fn run(opts: &MakespanOpts) -> Result<Report, BenchError> {
    let m = machine();
    let f = measure(opts)?;
    Ok(report(opts, &f, m))
}

fn hours(d: Duration) -> String {
    human_duration(d)
}

/// The report of one wave.
pub fn report(opts: &MakespanOpts, f: &Figures, m: Value) -> Report {
    let mut table = Table::new(["figure", "value", "target"]);
    let ratio = f.ratio();
    let share = f.call_share();
    table.row([
        "subjects".to_string(),
        thousands(u64::from(f.subjects)),
        String::new(),
    ]);
    table.row([
        "makespan (virtual)".to_string(),
        hours(f.makespan),
        String::new(),
    ]);
    table.row([
        "lower bound: longest sync delays of a subject".to_string(),
        hours(f.bound_sync),
        String::new(),
    ]);
    table.row([
        format!(
            "lower bound: {} calls at {}/s",
            thousands(f.calls),
            opts.rate
        ),
        hours(f.bound_rate),
        String::new(),
    ]);
    table.row([
        "makespan / lower bound".to_string(),
        format!("{ratio:.3}"),
        format!("≤ 1.05 ({})", if ratio <= 1.05 { "met" } else { "missed" }),
    ]);
    table.row([
        "backend calls per subject".to_string(),
        format!("{:.1}", f.calls_per_subject()),
        String::new(),
    ]);
    table.row([
        "same with a fixed 30 s poll".to_string(),
        format!("{:.1}", f.fixed_calls_per_subject()),
        String::new(),
    ]);
    table.row([
        "calls vs fixed 30 s poll".to_string(),
        format!("{:.1}%", share * 100.0),
        format!("≤ 30% ({})", if share <= 0.30 { "met" } else { "missed" }),
    ]);
    table.row([
        "throttled answers".to_string(),
        thousands(f.throttled),
        String::new(),
    ]);
    table.row([
        "critical subject: start → end".to_string(),
        format!("{} → {}", hours(f.critical.0), hours(f.critical.1)),
        String::new(),
    ]);
    let p = &f.critical_parts;
    table.row([
        "critical subject: queued for its first call + sync + detection + other".to_string(),
        format!(
            "{} + {} + {} + {}",
            hours(p.before_first_call),
            hours(p.sync),
            hours(p.detection),
            hours(p.other)
        ),
        String::new(),
    ]);
    table.row([
        "real time".to_string(),
        format!("{:.1}s", f.real_seconds),
        String::new(),
    ]);
    let outcomes = f
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    Report {
        title: "Wave makespan: DR → OC on the simulator's latency model".into(),
        table,
        notes: vec![
            format!(
                "seed {}, throttle limit {}/s (engine rate limit the same), {} workers, virtual clock; outcomes: {outcomes}",
                opts.seed, opts.rate, opts.concurrency
            ),
            "sync delay of a wait = start of the wait → last poll that did not see the change (≤ the true delay)".into(),
            machine_line(&m),
        ],
        json: json!({
            "benchmark": "makespan",
            "seed": opts.seed,
            "rate_limit": opts.rate,
            "concurrency": opts.concurrency,
            "figures": f.to_json(),
            "machine": m,
        }),
    }
}
