//! Benchmark 1: durable transitions per second.
//!
//! N instances × K steps whose action is a trivial read on a zero-latency
//! simulated tenant, so every step is exactly one durable transition (the
//! result and the next step's intent, committed before the next call). The
//! same wave runs twice in one process, each in a fresh sled store: with group
//! commit, and with the naive one-flush-per-transition committer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::tenants::scale_upn;
use super::{io_write_bytes, machine, machine_line, round, thousands, BenchError, Report, WorkDir};
use crate::backend::sim::{LatencyConfig, SimConfig, SimTenant};
use crate::backend::Tenant;
use crate::clock::{SharedClock, Stopwatch, SystemClock};
use crate::engine::executor::{DriveEnd, Driver, Progress};
use crate::engine::figures::Figures as LiveFigures;
use crate::engine::instance::Instance;
use crate::report::table::Table;
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::sled_store::SledStore;
use crate::store::{records, Batch, Store};

/// Parameters.
#[derive(Clone, Debug)]
pub struct TransitionsOpts {
    /// Instances in the group-commit wave.
    pub instances: u32,
    /// Steps per instance.
    pub steps: u32,
    /// Executor workers (instances in flight at once).
    pub concurrency: usize,
    /// Instances in the naive wave (0 skips it); smaller, since it is ~100× slower.
    pub naive_instances: u32,
    /// Where scratch stores go (default: the system temporary directory).
    pub dir: Option<PathBuf>,
    /// Keep the scratch stores.
    pub keep: bool,
}

impl Default for TransitionsOpts {
    fn default() -> Self {
        TransitionsOpts {
            instances: 10_000,
            steps: 10,
            concurrency: 512,
            naive_instances: 200,
            dir: None,
            keep: false,
        }
    }
}

/// Figures of one wave.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// `group` or `naive`.
    pub design: &'static str,
    /// Instances driven.
    pub instances: u32,
    /// Transitions committed.
    pub transitions: u64,
    /// Wall time of the wave.
    pub seconds: f64,
    /// Transitions per second.
    pub per_second: f64,
    /// Median time from handing a transition in to its durable acknowledgement.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Store syncs (flush + fsync) per transition.
    pub syncs_per_transition: f64,
    /// Record bytes (keys + values) per transition.
    pub payload_bytes_per_transition: f64,
    /// Bytes the process wrote to the device per transition (`/proc/self/io`).
    pub disk_bytes_per_transition: f64,
    /// Mean transitions per group commit.
    pub mean_group: f64,
    /// What the daemon's `/metrics` and `/api/attention` read of the run in
    /// motion, from its driver's figures (µs per view).
    pub live_view_us: f64,
    /// One read of the run's instances from the store, what each view cost
    /// before the driver kept figures (now: once per drive), in ms.
    pub store_read_ms: f64,
}

impl Figures {
    fn to_json(&self) -> Value {
        json!({
            "design": self.design,
            "instances": self.instances,
            "transitions": self.transitions,
            "seconds": round(self.seconds, 3),
            "transitions_per_s": round(self.per_second, 0),
            "commit_p50_ms": round(self.p50_ms, 3),
            "commit_p99_ms": round(self.p99_ms, 3),
            "syncs_per_transition": round(self.syncs_per_transition, 4),
            "payload_bytes_per_transition": round(self.payload_bytes_per_transition, 0),
            "disk_bytes_per_transition": round(self.disk_bytes_per_transition, 0),
            "mean_group": round(self.mean_group, 1),
            "live_view_us": round(self.live_view_us, 2),
            "store_read_ms": round(self.store_read_ms, 2),
        })
    }
}

/// The benchmark workflow: `steps` steps, each one trivial read.
pub fn workflow_text(steps: u32) -> String {
    let mut text = String::from(
        "name: bench-noop\nversion: 1\n\
         description: Steps whose action is a trivial read; each step is one durable transition.\n\
         subject: user\ninputs:\n  user: {type: upn}\nsteps:\n",
    );
    for i in 1..=steps.max(1) {
        text.push_str(&format!(
            "  - id: s{i}\n    action: {{op: get_location, args: {{location_id: none}}}}\n"
        ));
    }
    text
}

/// Parse the benchmark workflow.
pub fn workflow(steps: u32) -> Result<Arc<Workflow>, BenchError> {
    let loaded = crate::spec::parse_workflow(&workflow_text(steps), "bench:noop")?;
    Ok(Arc::new(loaded.workflow))
}

/// A simulated tenant with no latency at all.
pub fn zero_latency_sim(
    dir: &std::path::Path,
    clock: SharedClock,
) -> Result<SimTenant, BenchError> {
    let cfg = SimConfig {
        users: 1,
        latency: LatencyConfig {
            min: Duration::ZERO,
            typical_max: Duration::ZERO,
            tail_rate: 0.0,
            tail_max: Duration::ZERO,
        },
        ..SimConfig::default()
    };
    Ok(SimTenant::open(dir, &cfg, clock)?)
}

/// Create `n` pending instances of run `run`.
pub async fn create_instances(
    committer: &Committer,
    run: &str,
    n: u32,
    now: crate::clock::Timestamp,
    inputs: impl Fn(u32) -> serde_json::Map<String, Value>,
    subject: impl Fn(u32) -> String,
) -> Result<(), BenchError> {
    let mut b = Batch::default();
    for i in 0..n {
        let inst = Instance::new(run, i, subject(i), inputs(i), now);
        records::put_new_instance(&mut b, &inst)?;
        if b.ops.len() >= 15_000 {
            committer.commit(std::mem::take(&mut b)).await?;
        }
    }
    committer.commit(b).await?;
    Ok(())
}

/// A driver of run `run` as a benchmark builds it: no approvals, window,
/// limiter, budget or space guard; the default call timeout.
pub fn bench_driver(
    store: Arc<SledStore>,
    committer: Committer,
    clock: SharedClock,
    tenant: Arc<dyn Tenant>,
    run: &str,
    workflow: Arc<Workflow>,
    concurrency: usize,
) -> Driver {
    Driver {
        store: store as Arc<dyn Store>,
        committer,
        clock,
        tenant,
        run_id: run.into(),
        workflow,
        approvals: Vec::new(),
        on_failure: None,
        manual_ops: Vec::new(),
        window: None,
        concurrency,
        limiter: None,
        call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
        budget: None,
        space: None,
        progress: Arc::new(Progress::default()),
    }
}

/// The inputs of benchmark subject `i`: `user` only.
pub fn user_inputs(i: u32) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("user".into(), json!(scale_upn(i)));
    m
}

/// Run one wave of `instances` × `steps` with the group (or naive) committer.
pub async fn wave(
    opts: &TransitionsOpts,
    instances: u32,
    group: bool,
) -> Result<Figures, BenchError> {
    let work = WorkDir::new(
        opts.dir.as_deref(),
        if group { "group" } else { "naive" },
        opts.keep,
    )?;
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Arc::new(SledStore::open(&work.path().join("engine"))?);
    let sim = zero_latency_sim(&work.path().join("sim"), clock.clone())?;
    let committer = Committer::start(store.clone(), group);
    create_instances(
        &committer,
        "bench",
        instances,
        clock.now(),
        user_inputs,
        scale_upn,
    )
    .await?;
    let driver = Arc::new(bench_driver(
        store.clone(),
        committer.clone(),
        clock,
        Arc::new(sim),
        "bench",
        workflow(opts.steps)?,
        opts.concurrency,
    ));
    let stats = committer.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let (groups0, bytes0, hist0) = (
        load(&stats.groups),
        load(&stats.bytes),
        stats.latency.snapshot(),
    );
    let disk0 = io_write_bytes().unwrap_or(0);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let watch = Stopwatch::start();
    let end = driver.clone().drive(stop_rx).await?;
    let seconds = watch.elapsed().as_secs_f64();
    if end != DriveEnd::Finished {
        return Err(BenchError::new(format!("the wave ended {end:?}")));
    }
    let transitions = driver
        .progress
        .transitions
        .load(std::sync::atomic::Ordering::Relaxed);
    let groups = load(&stats.groups) - groups0;
    let bytes = load(&stats.bytes) - bytes0;
    let hist = stats.latency.snapshot().since(&hist0);
    let disk = io_write_bytes().unwrap_or(0).saturating_sub(disk0);
    let done = records::list_instances(&*store, "bench")?
        .iter()
        .filter(|i| i.status == crate::engine::instance::Status::Succeeded)
        .count();
    if done != instances as usize {
        return Err(BenchError::new(format!(
            "only {done} of {instances} instances succeeded"
        )));
    }
    let (live_view_us, store_read_ms) = view_costs(&driver, &*store, instances)?;
    let per = |x: u64| x as f64 / transitions.max(1) as f64;
    Ok(Figures {
        live_view_us,
        store_read_ms,
        design: if group { "group" } else { "naive" },
        instances,
        transitions,
        seconds,
        per_second: transitions as f64 / seconds.max(1e-9),
        p50_ms: hist.quantile(0.5).as_secs_f64() * 1e3,
        p99_ms: hist.quantile(0.99).as_secs_f64() * 1e3,
        syncs_per_transition: per(groups),
        payload_bytes_per_transition: per(bytes),
        disk_bytes_per_transition: per(disk),
        mean_group: transitions as f64 / groups.max(1) as f64,
    })
}

/// The cost of the daemon's view of a run in motion from its driver's
/// figures (checked against the wave's outcome), and of one read of the run
/// from the store instead.
fn view_costs(
    driver: &Driver,
    store: &dyn Store,
    instances: u32,
) -> Result<(f64, f64), BenchError> {
    let lock = |f: &'_ std::sync::Mutex<LiveFigures>| {
        f.lock().unwrap_or_else(|p| p.into_inner()).counts().clone()
    };
    let counts = lock(&driver.progress.figures);
    if counts.get("succeeded") != Some(&(instances as usize)) || counts.len() != 1 {
        return Err(BenchError::new(format!(
            "the driver's figures say {counts:?}, not {instances} succeeded"
        )));
    }
    const VIEWS: u32 = 1_000;
    let watch = Stopwatch::start();
    for _ in 0..VIEWS {
        let f = driver
            .progress
            .figures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::hint::black_box((f.counts().clone(), f.down(), f.ended(), f.stopped().count()));
    }
    let live_us = watch.elapsed().as_secs_f64() * 1e6 / f64::from(VIEWS);
    let fresh = std::sync::Mutex::new(LiveFigures::default());
    let watch = Stopwatch::start();
    LiveFigures::seed(&fresh, store, &driver.run_id)?;
    Ok((live_us, watch.elapsed().as_secs_f64() * 1e3))
}

/// Median time to overwrite 4 KB of a file in `base` and `fsync` it, as the
/// store's sync does after sled's own flush: part of every naive commit.
pub fn flush_latency(base: Option<&std::path::Path>) -> Result<Duration, BenchError> {
    use std::io::{Seek, SeekFrom, Write};
    let work = WorkDir::new(base, "flush", false)?;
    let mut f = std::fs::File::create(work.path().join("probe"))?;
    let block = vec![0x5au8; 4096];
    f.write_all(&block)?;
    f.sync_all()?;
    let mut times = Vec::with_capacity(101);
    for _ in 0..101 {
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&block)?;
        let t = Stopwatch::start();
        f.sync_all()?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// Both waves, as figures (group first).
pub async fn measure(opts: &TransitionsOpts) -> Result<Vec<Figures>, BenchError> {
    let mut out = vec![wave(opts, opts.instances, true).await?];
    if opts.naive_instances > 0 {
        out.push(wave(opts, opts.naive_instances, false).await?);
    }
    Ok(out)
}

/// Run the benchmark and build its report.
pub fn run(opts: &TransitionsOpts) -> Result<Report, BenchError> {
    let m = machine();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let figures = rt.block_on(measure(opts))?;
    let flush = flush_latency(opts.dir.as_deref())?;
    Ok(report(opts, &figures, flush, m))
}

/// The report of measured figures; `flush` is the device's flush latency.
pub fn report(opts: &TransitionsOpts, figures: &[Figures], flush: Duration, m: Value) -> Report {
    let mut table = Table::new([
        "design",
        "instances",
        "transitions",
        "seconds",
        "transitions/s",
        "commit p50 ms",
        "commit p99 ms",
        "fsyncs/transition",
        "bytes/transition",
        "disk bytes/transition",
        "mean group",
    ]);
    for f in figures {
        table.row([
            f.design.to_string(),
            thousands(u64::from(f.instances)),
            thousands(f.transitions),
            format!("{:.2}", f.seconds),
            thousands(f.per_second.round() as u64),
            format!("{:.2}", f.p50_ms),
            format!("{:.2}", f.p99_ms),
            format!("{:.4}", f.syncs_per_transition),
            format!("{:.0}", f.payload_bytes_per_transition),
            format!("{:.0}", f.disk_bytes_per_transition),
            format!("{:.1}", f.mean_group),
        ]);
    }
    let ratio = match (figures.first(), figures.get(1)) {
        (Some(g), Some(n)) if n.per_second > 0.0 => Some(g.per_second / n.per_second),
        _ => None,
    };
    let mut notes = vec![format!(
        "{} steps per instance (K+1 = {} durable transitions each), {} workers, sim backend with zero latency; \
         fsyncs = store syncs (sled flush + fsync of its data file); bytes = keys + values handed to sled",
        opts.steps,
        opts.steps + 1,
        opts.concurrency
    )];
    if let Some(r) = ratio {
        notes.push(format!("group commit / naive: {r:.1}×"));
    }
    if let Some(g) = figures.first() {
        notes.push(format!(
            "the daemon's view of the run in motion (/metrics, /api/attention) from the driver's figures: \
             {:.2} µs; the same from the store, as each view did before: {:.1} ms",
            g.live_view_us, g.store_read_ms
        ));
    }
    let flush_ms = flush.as_secs_f64() * 1e3;
    if let Some(n) = figures.get(1) {
        notes.push(format!(
            "naive commits are serial: {:.3} ms each = sled's flush (pwrite + sync_file_range) + fsync; \
             an fsync of a 4 KB overwrite alone takes {flush_ms:.3} ms here (median of 101)",
            1e3 / n.per_second.max(1e-9)
        ));
    }
    notes.push(machine_line(&m));
    Report {
        title: "Durable transitions per second".into(),
        table,
        notes,
        json: json!({
            "benchmark": "transitions",
            "steps": opts.steps,
            "concurrency": opts.concurrency,
            "waves": figures.iter().map(Figures::to_json).collect::<Vec<_>>(),
            "group_over_naive": ratio.map(|r| round(r, 2)),
            "device_flush_ms": round(flush_ms, 4),
            "machine": m,
        }),
    }
}
