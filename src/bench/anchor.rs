//! Benchmark 5: the anchors-bench workload (`../shared/anchors-bench`) in one
//! process, for a side-by-side table with Restate and Temporal.
//!
//! N instances × K steps; a step is one action on an in-process external
//! system ([`AnchorTenant`]), then a wait that polls it until it answers
//! "done" on the `--done-on`th poll, sleeping `--sleep` (a durable timer)
//! between polls. The real engine runs it: sled in a fresh directory, the
//! group committer, the executor; every action and poll result is journaled
//! as in production. One JSON line carries the anchors' keys.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::tenants::{scale_upn, AnchorTenant};
use super::transitions::{bench_driver, create_instances, user_inputs};
use super::{
    dir_size, machine, machine_line, proc_status_bytes, round, BenchError, Report, WorkDir,
};
use crate::clock::{SharedClock, Stopwatch, SystemClock};
use crate::engine::executor::DriveEnd;
use crate::engine::instance::Status;
use crate::report::table::Table;
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::records;
use crate::store::sled_store::SledStore;

const RUN: &str = "anchor";
const MIB: f64 = 1024.0 * 1024.0;

/// `portflow bench anchor` options.
#[derive(Clone, Debug, clap::Args)]
pub struct AnchorOpts {
    /// Instances.
    #[arg(long, default_value_t = 5_000)]
    pub n: u32,
    /// Steps per instance (action, then polls until done).
    #[arg(long, default_value_t = 5)]
    pub k: u32,
    /// Durable sleep between two polls of a step (100ms at least).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub sleep: Duration,
    /// The poll of a step that answers "done".
    #[arg(long, default_value_t = 3)]
    pub done_on: u32,
    /// Executor workers (instances acting or polling at one moment).
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
    /// Scratch directory (default: the system temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the engine store.
    #[arg(long)]
    pub keep: bool,
    /// Tiny sizes, for a smoke test (N ≤ 50, K ≤ 2).
    #[arg(long)]
    pub quick: bool,
}

impl Default for AnchorOpts {
    fn default() -> Self {
        AnchorOpts {
            n: 5_000,
            k: 5,
            sleep: Duration::from_millis(100),
            done_on: 3,
            concurrency: 512,
            dir: None,
            keep: false,
            quick: false,
        }
    }
}

/// The workflow: K × (`act-k`, an idempotent write; `poll-k`, a wait with no
/// action of its own, so it polls at once and then every `sleep`).
pub fn workflow_text(k: u32, sleep: Duration) -> String {
    let sleep = humantime::format_duration(sleep);
    let mut text = String::from(
        "name: bench-anchor\nversion: 1\nfast_polls: true\n\
         description: anchors-bench workload, K x (action, then poll until done)\n\
         subject: user\ninputs:\n  user: {type: upn}\nsteps:\n",
    );
    for i in 1..=k.max(1) {
        text.push_str(&format!(
            "  - id: act-{i}\n    action:\n      op: grant_voice_routing_policy\n      \
             args: {{user: \"${{inputs.user}}\", policy: bench-{i}}}\n\
             \x20 - id: poll-{i}\n    wait:\n      \
             observe: {{op: get_user, args: {{user: \"${{inputs.user}}\"}}}}\n      \
             until: obs.online_voice_routing_policy == 'bench-{i}'\n      \
             expected: 10m\n      timeout: 10m\n      \
             poll: {{initial: {sleep}, max: {sleep}, factor: 1}}\n      on_timeout: fail\n"
        ));
    }
    text
}

fn workflow(k: u32, sleep: Duration) -> Result<Arc<Workflow>, BenchError> {
    let loaded = crate::spec::parse_workflow(&workflow_text(k, sleep), "bench:anchor")?;
    Ok(Arc::new(loaded.workflow))
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Creating the N instances durably, in seconds.
    pub start_s: f64,
    /// Driving them to the end, in seconds.
    pub drive_s: f64,
    /// Polls the external system answered.
    pub polls: u64,
    /// Actions it received.
    pub actions: u64,
    /// Durable transitions committed while driving.
    pub transitions: u64,
    /// Instances that succeeded.
    pub succeeded: u64,
    /// Instances that ended otherwise.
    pub failed: u64,
    /// Peak RSS of the process (`VmHWM`), bytes.
    pub hwm_bytes: u64,
    /// CPU time of the process so far (user + system), seconds.
    pub cpu_s: f64,
    /// Allocated size of the engine store after the run, bytes.
    pub disk_bytes: u64,
    /// Keys and values the store holds after the run (what a compacted copy
    /// would need before its own overhead), bytes.
    pub live_bytes: u64,
}

impl Figures {
    /// Creating plus driving.
    pub fn wall_s(&self) -> f64 {
        self.start_s + self.drive_s
    }
}

/// User + system CPU time of this process (`getrusage`), in seconds.
pub fn process_cpu_s() -> Option<f64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (rc == 0).then(|| secs(ru.ru_utime) + secs(ru.ru_stime))
}

/// Create and drive the N instances once, in a fresh store.
pub async fn measure(opts: &AnchorOpts) -> Result<Figures, BenchError> {
    let work = WorkDir::new(opts.dir.as_deref(), "anchor", opts.keep)?;
    let store_dir = work.path().join("engine");
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Arc::new(SledStore::open(&store_dir)?);
    let committer = Committer::start(store.clone(), true);
    let tenant = Arc::new(AnchorTenant::new(opts.done_on));
    let driver = Arc::new(bench_driver(
        store.clone(),
        committer.clone(),
        clock.clone(),
        tenant.clone(),
        RUN,
        workflow(opts.k, opts.sleep)?,
        opts.concurrency,
    ));
    let watch = Stopwatch::start();
    create_instances(&committer, RUN, opts.n, clock.now(), user_inputs, scale_upn).await?;
    let start_s = watch.elapsed().as_secs_f64();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let end = driver.clone().drive(stop_rx).await?;
    let drive_s = watch.elapsed().as_secs_f64() - start_s;
    if end != DriveEnd::Finished {
        return Err(BenchError::new(format!("the run ended {end:?}")));
    }
    let statuses = records::list_statuses(&*store, RUN)?;
    let succeeded = statuses
        .iter()
        .filter(|(_, s)| *s == Status::Succeeded)
        .count() as u64;
    let transitions = driver
        .progress
        .transitions
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(Figures {
        start_s,
        drive_s,
        polls: tenant.polls(),
        actions: tenant.actions(),
        transitions,
        succeeded,
        failed: statuses.len() as u64 - succeeded,
        hwm_bytes: proc_status_bytes(None, "VmHWM").unwrap_or(0),
        cpu_s: process_cpu_s().unwrap_or(0.0),
        disk_bytes: dir_size(&store_dir).0,
        live_bytes: live_bytes(&*store)?,
    })
}

/// Bytes of every key and value in the store.
fn live_bytes(store: &dyn crate::store::Store) -> Result<u64, BenchError> {
    let mut total = 0u64;
    store.scan_prefix(b"", &mut |k, v| {
        total += (k.len() + v.len()) as u64;
        true
    })?;
    Ok(total)
}

/// Run the benchmark and build its report.
pub fn run(opts: &AnchorOpts) -> Result<Report, BenchError> {
    let mut opts = opts.clone();
    if opts.quick {
        opts.n = opts.n.min(50);
        opts.k = opts.k.min(2);
    }
    let m = machine();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let f = rt.block_on(measure(&opts))?;
    Ok(report(&opts, &f, m))
}

/// The report: a short table, then the JSON line `common/summarize.py` reads.
pub fn report(opts: &AnchorOpts, f: &Figures, m: Value) -> Report {
    let (n, k) = (f64::from(opts.n), f64::from(opts.k));
    let wall = f.wall_s().max(1e-9);
    let sleep_ms = opts.sleep.as_millis();
    let line = json!({
        "engine": "portflow",
        "variant": format!("bench-anchor,sleep{sleep_ms}ms,c{}", opts.concurrency),
        "n": opts.n,
        "k": opts.k,
        "start_s": round(f.start_s, 3),
        "wall_s": round(wall, 3),
        "drive_s": round(f.drive_s, 3),
        "instances_per_s": round(n / wall, 2),
        "steps_per_s": round(n * k / wall, 2),
        "polls_total": f.polls,
        "polls_expected": u64::from(opts.done_on) * u64::from(opts.k) * u64::from(opts.n),
        "actions_total": f.actions,
        "transitions": f.transitions,
        "succeeded": f.succeeded,
        "failed": f.failed,
        "server_hwm_mb": round(f.hwm_bytes as f64 / MIB, 1),
        "server_cpu_s": round(f.cpu_s, 2),
        "cpu_ms_per_instance": round(f.cpu_s * 1e3 / n.max(1.0), 3),
        "disk_mb": round(f.disk_bytes as f64 / MIB, 1),
        "disk_bytes_per_instance": (f.disk_bytes as f64 / n.max(1.0)).round(),
        "live_bytes_per_instance": (f.live_bytes as f64 / n.max(1.0)).round(),
        "sleep_ms": sleep_ms as u64,
        "done_on": opts.done_on,
        "concurrency": opts.concurrency,
        "machine": m,
    });
    let mut table = Table::new(["figure", "value"]);
    let rows: [(&str, String); 10] = [
        ("instances × steps", format!("{} × {}", opts.n, opts.k)),
        ("wall s (create + drive)", format!("{wall:.2}")),
        ("start s (create)", format!("{:.2}", f.start_s)),
        ("instances/s", format!("{:.1}", n / wall)),
        ("steps/s", format!("{:.1}", n * k / wall)),
        ("polls / actions", format!("{} / {}", f.polls, f.actions)),
        (
            "succeeded / failed",
            format!("{} / {}", f.succeeded, f.failed),
        ),
        (
            "peak RSS MiB / CPU s",
            format!("{:.1} / {:.2}", f.hwm_bytes as f64 / MIB, f.cpu_s),
        ),
        (
            "store on disk MiB",
            format!("{:.1}", f.disk_bytes as f64 / MIB),
        ),
        (
            "records held, bytes per instance",
            format!("{:.0}", f.live_bytes as f64 / n.max(1.0)),
        ),
    ];
    for (name, value) in rows {
        table.row([name.to_string(), value]);
    }
    let notes = vec![
        format!(
            "one process: engine (sled, group commit), workflow and an in-process external system; \
             a step = 1 action, then polls until poll {} answers done, with {} durable sleeps between them; \
             {} executor workers",
            opts.done_on,
            humantime::format_duration(opts.sleep),
            opts.concurrency
        ),
        machine_line(&line["machine"]),
        line.to_string(),
    ];
    Report {
        title: "anchors-bench workload".into(),
        table,
        notes,
        json: line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Call, Operation, Tenant};

    async fn policy(t: &AnchorTenant) -> Value {
        let get = Call::observation(Operation::GetUser { user: scale_upn(7) });
        let view = t.execute(&get).await.unwrap_or_default();
        view["online_voice_routing_policy"].clone()
    }

    async fn grant(t: &AnchorTenant, p: &str) {
        let op = Operation::GrantVoiceRoutingPolicy {
            user: scale_upn(7),
            policy: Some(p.into()),
        };
        assert!(t
            .execute(&Call::action(op, "anchor/7/act/1", 1))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn the_external_system_answers_done_on_the_nth_poll_after_each_action() {
        let t = AnchorTenant::new(3);
        grant(&t, "bench-1").await;
        assert_eq!(policy(&t).await, Value::Null);
        assert_eq!(policy(&t).await, Value::Null);
        assert_eq!(policy(&t).await, json!("bench-1"));
        grant(&t, "bench-2").await;
        assert_eq!(
            policy(&t).await,
            json!("bench-1"),
            "a new action restarts the count"
        );
        assert_eq!(policy(&t).await, json!("bench-1"));
        assert_eq!(policy(&t).await, json!("bench-2"));
        assert_eq!((t.actions(), t.polls()), (2, 6));
    }

    #[test]
    fn the_example_for_portflow_run_is_the_bench_workflow() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bench/anchor.yaml");
        let file = std::fs::read_to_string(path).unwrap_or_default();
        let body: String = file
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(body, workflow_text(5, Duration::from_millis(100)));
    }

    #[test]
    fn the_workflow_opts_into_fast_polls_and_refuses_faster_ones() {
        let wf = workflow(5, Duration::from_millis(100));
        assert!(wf
            .as_ref()
            .is_ok_and(|w| w.steps.len() == 10 && w.fast_polls));
        let err = workflow(1, Duration::from_millis(50))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("poll.initial")),
            "50ms is refused"
        );
    }
}
