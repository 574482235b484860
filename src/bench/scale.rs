//! Benchmark 2: 100,000 instances in flight, waiting on polls.
//!
//! The parent process runs the portflow binary itself three times on one state
//! directory (a hidden `bench scale-child` command):
//!
//! 1. **create**: N DR → OC instances driven on a virtual clock against a tenant
//!    stand-in until every one polls `wait-operator-upload` (the operator has
//!    not uploaded the numbers); the process exits.
//! 2. **resume** after that clean exit, `outage` later (every poll overdue);
//!    once polling, it is killed with SIGKILL.
//! 3. **resume after SIGKILL**: the measured restart. Time from spawning the
//!    process to its first poll (store opened, every timer re-armed, polls
//!    issued), resident memory (`VmRSS`, peak `VmHWM` from `/proc/<pid>/status`)
//!    once it has polled every overdue instance, and the state directory size.
//!
//! The stand-in tenant answers from a few bytes of state, so the child's
//! memory is the engine's own (a real tenant is remote).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::tenants::{scale_number, scale_upn, ScaleTenant};
use super::vclock::{run_virtual, VirtualClock};
use super::{
    dir_size, machine, machine_line, megabytes, proc_status_bytes, round, thousands, BenchError,
    Report, WorkDir,
};
use crate::clock::{Clock, ScaledClock, SharedClock, Stopwatch, SystemClock, Timestamp};
use crate::engine::executor::{Driver, Place};
use crate::report::table::Table;
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::sled_store::SledStore;
use crate::store::Store;

/// The run id of the scale state.
const RUN: &str = "scale";
/// The step every instance ends up polling.
const UPLOAD_STEP: &str = "wait-operator-upload";

/// Parameters.
#[derive(Clone, Debug)]
pub struct ScaleOpts {
    /// Instances in flight.
    pub instances: u32,
    /// Virtual time between one process and the next (≥ 10 min makes every poll overdue).
    pub outage: Duration,
    /// Executor workers.
    pub concurrency: usize,
    /// Longest wait for a child to report.
    pub timeout: Duration,
    /// Scratch directory (default: the system temporary directory; use a real
    /// disk, since the restart reads the store back).
    pub dir: Option<PathBuf>,
    /// Keep the state directory.
    pub keep: bool,
}

impl Default for ScaleOpts {
    fn default() -> Self {
        ScaleOpts {
            instances: 100_000,
            outage: Duration::from_secs(15 * 60),
            concurrency: 20,
            timeout: Duration::from_secs(600),
            dir: None,
            keep: false,
        }
    }
}

/// What the hidden child command does.
#[derive(Clone, Debug)]
pub enum ChildMode {
    /// Create the in-flight state.
    Create,
    /// Resume with virtual time standing at this instant.
    Resume {
        /// Virtual now at process start.
        virtual_now: Timestamp,
    },
}

/// Figures of one resumed process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resume {
    /// Spawn → first poll, seen by the parent.
    pub first_poll: Duration,
    /// The child's own count: start of its command → store open.
    pub open_ms: f64,
    /// The child's own count: start of its command → first poll.
    pub child_first_poll_ms: f64,
    /// Spawn → every overdue instance polled once.
    pub drained: Duration,
    /// Resident memory after the drain.
    pub rss: u64,
    /// Peak resident memory.
    pub hwm: u64,
    /// Resident memory at the first poll (every timer armed).
    pub rss_armed: u64,
}

/// All figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Instances in flight.
    pub instances: u32,
    /// Seconds the creating process took.
    pub create_seconds: f64,
    /// State directory after creation: (on disk, apparent).
    pub size_created: (u64, u64),
    /// State directory at the end.
    pub size_end: (u64, u64),
    /// Resume after a clean exit.
    pub after_exit: Resume,
    /// Resume after SIGKILL.
    pub after_kill: Resume,
    /// Live records at the end, by key prefix: (prefix, keys, key + value bytes).
    pub records: Vec<(String, u64, u64)>,
}

impl Figures {
    /// JSON form.
    pub fn to_json(&self) -> Value {
        let r = |x: &Resume| {
            json!({
                "first_poll_s": round(x.first_poll.as_secs_f64(), 3),
                "child_store_open_ms": round(x.open_ms, 1),
                "child_first_poll_ms": round(x.child_first_poll_ms, 1),
                "all_overdue_polled_s": round(x.drained.as_secs_f64(), 3),
                "rss_bytes": x.rss,
                "rss_at_first_poll_bytes": x.rss_armed,
                "peak_rss_bytes": x.hwm,
            })
        };
        json!({
            "instances": self.instances,
            "create_seconds": round(self.create_seconds, 2),
            "state_bytes_on_disk": self.size_created.0,
            "state_bytes_apparent": self.size_created.1,
            "state_bytes_on_disk_at_end": self.size_end.0,
            "resume_after_exit": r(&self.after_exit),
            "resume_after_sigkill": r(&self.after_kill),
            "live_records": self.records.iter().map(|(p, n, b)| json!({"prefix": p, "keys": n, "bytes": b})).collect::<Vec<_>>(),
        })
    }
}

/// A running child and its stdout lines.
struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    started: Stopwatch,
}

impl ChildProc {
    fn spawn(args: &[String]) -> Result<ChildProc, BenchError> {
        let exe = std::env::current_exe()?;
        let started = Stopwatch::start();
        let mut child = Command::new(exe)
            .args(args)
            .env("PORTFLOW_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::new("no stdout from the child"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildProc {
            child,
            lines,
            started,
        })
    }

    /// Wait for the line `{"event": <event>, …}`; returns it and the time since spawn.
    fn wait_for(
        &mut self,
        event: &str,
        timeout: Duration,
    ) -> Result<(Value, Duration), BenchError> {
        let deadline = self.started.elapsed() + timeout;
        loop {
            let left = deadline.saturating_sub(self.started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if v["event"] == event {
                        return Ok((v, self.started.elapsed()));
                    }
                    if v["event"] == "error" {
                        return Err(BenchError::new(format!(
                            "scale child: {}",
                            v["message"].as_str().unwrap_or("failed")
                        )));
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    self.kill();
                    return Err(BenchError::new(format!(
                        "scale child did not report {event:?} within {}s (exit status {status:?})",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn child_args(dir: &Path, opts: &ScaleOpts, mode: &ChildMode) -> Vec<String> {
    let mut a = vec![
        "bench".to_string(),
        "scale-child".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--instances".into(),
        opts.instances.to_string(),
        "--concurrency".into(),
        opts.concurrency.to_string(),
    ];
    match mode {
        ChildMode::Create => a.push("--create".into()),
        ChildMode::Resume { virtual_now } => {
            a.push("--virtual-now".into());
            a.push(virtual_now.0.to_string());
        }
    }
    a
}

fn resume(
    dir: &Path,
    opts: &ScaleOpts,
    virtual_now: Timestamp,
) -> Result<(Resume, ChildProc), BenchError> {
    let mut child = ChildProc::spawn(&child_args(dir, opts, &ChildMode::Resume { virtual_now }))?;
    let (v, first_poll) = child.wait_for("first_poll", opts.timeout)?;
    let (_, drained) = child.wait_for("drained", opts.timeout)?;
    let pid = child.pid();
    let r = Resume {
        first_poll,
        open_ms: v["store_open_ms"].as_f64().unwrap_or(0.0),
        child_first_poll_ms: v["ms"].as_f64().unwrap_or(0.0),
        drained,
        rss: proc_status_bytes(Some(pid), "VmRSS").unwrap_or(0),
        rss_armed: v["rss_bytes"].as_u64().unwrap_or(0),
        hwm: proc_status_bytes(Some(pid), "VmHWM").unwrap_or(0),
    };
    Ok((r, child))
}

/// Run the three processes and measure.
pub fn measure(opts: &ScaleOpts) -> Result<Figures, BenchError> {
    let work = WorkDir::new(opts.dir.as_deref(), "scale", opts.keep)?;
    let dir = work.path();
    let mut create = ChildProc::spawn(&child_args(dir, opts, &ChildMode::Create))?;
    let (v, took) = create.wait_for("created", opts.timeout)?;
    let _ = create.child.wait();
    let created_at = Timestamp(v["virtual_now_ms"].as_i64().unwrap_or(0));
    let size_created = dir_size(&dir.join("engine"));

    let (after_exit, mut first) = resume(dir, opts, created_at.plus(opts.outage))?;
    first.kill();
    let later = created_at.plus(opts.outage * 2);
    let (after_kill, mut second) = resume(dir, opts, later)?;
    second.kill();
    let records = live_records(&dir.join("engine"))?;
    Ok(Figures {
        instances: opts.instances,
        create_seconds: took.as_secs_f64(),
        size_created,
        size_end: dir_size(&dir.join("engine")),
        after_exit,
        after_kill,
        records,
    })
}

/// Count the live records of a store by key prefix (`i/`, `e/`, …).
fn live_records(dir: &Path) -> Result<Vec<(String, u64, u64)>, BenchError> {
    let store = SledStore::open(dir)?;
    let mut by: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    store.scan_prefix(b"", &mut |k, v| {
        let prefix = String::from_utf8_lossy(&k[..k.len().min(2)]).into_owned();
        let e = by.entry(prefix).or_default();
        e.0 += 1;
        e.1 += (k.len() + v.len()) as u64;
        true
    })?;
    Ok(by.into_iter().map(|(p, (n, b))| (p, n, b)).collect())
}

/// Run the benchmark and build its report.
pub fn run(opts: &ScaleOpts) -> Result<Report, BenchError> {
    let m = machine();
    let f = measure(opts)?;
    Ok(report(opts, &f, m))
}

/// The report.
pub fn report(opts: &ScaleOpts, f: &Figures, m: Value) -> Report {
    let mb = |b: u64| megabytes(b);
    let k = &f.after_kill;
    let per = |b: u64| format!("{:.2} KB", b as f64 / f64::from(f.instances.max(1)) / 1e3);
    let mut table = Table::new(["figure", "value", "per instance", "target"]);
    table.row([
        "instances in flight".to_string(),
        thousands(u64::from(f.instances)),
        String::new(),
        String::new(),
    ]);
    table.row([
        "state directory (on disk)".to_string(),
        mb(f.size_created.0),
        per(f.size_created.0),
        String::new(),
    ]);
    let live: u64 = f.records.iter().map(|r| r.2).sum();
    table.row([
        "live records (keys + values)".to_string(),
        mb(live),
        per(live),
        String::new(),
    ]);
    table.row([
        "peak RSS after SIGKILL + resume".to_string(),
        mb(k.hwm),
        per(k.hwm),
        format!(
            "≤ 300 MB ({})",
            if k.hwm <= 300_000_000 {
                "met"
            } else {
                "missed"
            }
        ),
    ]);
    table.row([
        "RSS when every timer is armed (first poll)".to_string(),
        mb(k.rss_armed),
        per(k.rss_armed),
        String::new(),
    ]);
    table.row([
        "RSS once every overdue poll was issued".to_string(),
        mb(k.rss),
        per(k.rss),
        String::new(),
    ]);
    table.row([
        "resume after SIGKILL: start → timers armed, first poll".to_string(),
        format!("{:.3}s", k.first_poll.as_secs_f64()),
        String::new(),
        format!(
            "≤ 2 s ({})",
            if k.first_poll <= Duration::from_secs(2) {
                "met"
            } else {
                "missed"
            }
        ),
    ]);
    table.row([
        "  of which: store open (sled recovery)".to_string(),
        format!("{:.3}s", k.open_ms / 1e3),
        String::new(),
        String::new(),
    ]);
    table.row([
        "resume after SIGKILL: start → every overdue instance polled".to_string(),
        format!("{:.3}s", k.drained.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    table.row([
        "resume after a clean exit: start → first poll".to_string(),
        format!("{:.3}s", f.after_exit.first_poll.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    Report {
        title: "Scale: instances in flight waiting on polls".into(),
        table,
        notes: vec![
            format!(
                "DR → OC instances polling `{UPLOAD_STEP}`; each restart comes {} of virtual time later, so every poll is overdue; \
                 {} workers; creating the state took {:.1}s",
                crate::report::table::human_duration(opts.outage),
                opts.concurrency,
                f.create_seconds
            ),
            format!(
                "live records by kind: {}",
                f.records
                    .iter()
                    .map(|(p, n, b)| format!("{p} {} keys {}", thousands(*n), megabytes(*b)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            machine_line(&m),
        ],
        json: json!({
            "benchmark": "scale",
            "outage_s": opts.outage.as_secs(),
            "concurrency": opts.concurrency,
            "figures": f.to_json(),
            "machine": m,
        }),
    }
}

/// Print one JSON line for the parent.
fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn dr_to_oc() -> Result<Arc<Workflow>, BenchError> {
    let text = crate::spec::builtin::workflow_text("direct-routing-to-operator-connect")
        .ok_or_else(|| BenchError::new("the built-in DR → OC workflow is missing"))?;
    let wf = crate::spec::parse_workflow(text, "builtin:direct-routing-to-operator-connect")?;
    Ok(Arc::new(crate::spec::compose(&wf.workflow, &[])))
}

fn driver(
    store: Arc<SledStore>,
    committer: Committer,
    clock: SharedClock,
    tenant: Arc<ScaleTenant>,
    concurrency: usize,
) -> Result<Arc<Driver>, BenchError> {
    Ok(Arc::new(Driver {
        approvals: vec!["operator-coordinated".into()],
        ..super::transitions::bench_driver(
            store,
            committer,
            clock,
            tenant,
            RUN,
            dr_to_oc()?,
            concurrency,
        )
    }))
}

/// The hidden child command. Reports progress as JSON lines on stdout.
pub fn child(
    dir: &Path,
    instances: u32,
    concurrency: usize,
    mode: ChildMode,
) -> Result<(), BenchError> {
    let started = Stopwatch::start();
    let res = match mode {
        ChildMode::Create => create(dir, instances, concurrency),
        ChildMode::Resume { virtual_now } => {
            resume_child(dir, instances, concurrency, virtual_now, started)
        }
    };
    if let Err(e) = &res {
        emit(json!({"event": "error", "message": e.to_string()}));
    }
    res
}

fn create(dir: &Path, instances: u32, concurrency: usize) -> Result<(), BenchError> {
    let clock = VirtualClock::new(super::makespan::WAVE_START);
    let shared: SharedClock = clock.clone();
    let store = Arc::new(SledStore::open(&dir.join("engine"))?);
    let committer = Committer::start(store.clone(), true);
    let tenant = Arc::new(ScaleTenant::default());
    let d = driver(
        store,
        committer.clone(),
        shared.clone(),
        tenant,
        concurrency.max(64),
    )?;
    let upload = d
        .workflow
        .steps
        .iter()
        .position(|s| s.id == UPLOAD_STEP)
        .ok_or_else(|| BenchError::new("no wait-operator-upload step"))?;
    let watch = Stopwatch::start();
    let c = committer.clone();
    let busy = move || c.stats().waiting.load(Ordering::SeqCst) > 0;
    let c = committer.clone();
    let vclock = clock.clone();
    run_virtual(clock, busy, async move {
        super::transitions::create_instances(
            &c,
            RUN,
            instances,
            vclock.now(),
            |i| {
                let mut m = serde_json::Map::new();
                m.insert("user".into(), json!(scale_upn(i)));
                m.insert("number".into(), json!(scale_number(i)));
                m.insert("location_id".into(), Value::Null);
                // The operator sets the address: no location to read or give.
                m.insert("address_mode".into(), json!("operator_assigns"));
                m
            },
            scale_upn,
        )
        .await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let progress = d.progress.clone();
        let monitor = {
            let vclock = vclock.clone();
            tokio::spawn(async move {
                // Once all poll the upload, let them poll a few times (their next
                // polls spread out), then stop as an operator would.
                let mut settle: Option<Timestamp> = None;
                loop {
                    vclock
                        .sleep_until(vclock.now().plus(Duration::from_secs(30)))
                        .await;
                    let polling = progress
                        .counts()
                        .get(&Place::Step(upload, "waiting"))
                        .copied()
                        .unwrap_or(0);
                    match settle {
                        None if polling == instances as usize => {
                            settle = Some(vclock.now().plus(Duration::from_secs(600)));
                        }
                        Some(t) if vclock.now() >= t => {
                            let _ = stop_tx.send(true);
                            return;
                        }
                        _ => {}
                    }
                }
            })
        };
        let end = d.drive(stop_rx).await;
        monitor.abort();
        end?;
        c.barrier().await?;
        Ok::<(), BenchError>(())
    })??;
    emit(json!({
        "event": "created",
        "virtual_now_ms": clock_now_ms(&shared),
        "seconds": watch.elapsed().as_secs_f64(),
    }));
    Ok(())
}

fn clock_now_ms(c: &SharedClock) -> i64 {
    c.now().0
}

fn resume_child(
    dir: &Path,
    instances: u32,
    concurrency: usize,
    virtual_now: Timestamp,
    started: Stopwatch,
) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Arc::new(SledStore::open(&dir.join("engine"))?);
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        let committer = Committer::start(store.clone(), true);
        // Virtual time continues from `virtual_now` at real speed.
        let clock: SharedClock = Arc::new(ScaledClock {
            real_anchor: SystemClock.now(),
            virtual_anchor: virtual_now,
            scale: 1.0,
        });
        let tenant = Arc::new(ScaleTenant::default());
        let d = driver(store, committer, clock, tenant.clone(), concurrency)?;
        let (_stop_tx, stop_rx) = watch::channel(false);
        let drive = tokio::spawn(d.drive(stop_rx));
        tenant.first_call.notified().await;
        emit(json!({
            "event": "first_poll",
            "ms": started.elapsed().as_secs_f64() * 1e3,
            "store_open_ms": open_ms,
            "rss_bytes": super::proc_status_bytes(None, "VmRSS"),
        }));
        // Every instance was overdue: wait until each has been polled once.
        while tenant.calls() < u64::from(instances) && !drive.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        emit(json!({
            "event": "drained",
            "ms": started.elapsed().as_secs_f64() * 1e3,
            "calls": tenant.calls(),
        }));
        // Keep polling until the parent kills us.
        match drive.await {
            Ok(r) => {
                r?;
            }
            Err(e) => return Err(BenchError::new(format!("driver: {e}"))),
        }
        Ok::<(), BenchError>(())
    })
}
