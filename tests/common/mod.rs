//! Helpers shared by the integration tests: run the real binary in a temp dir.

#![allow(dead_code)]
// The integration tests drive real processes on real time.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portflow")
}

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `portflow` command with `--state` set and the repository's workflows on the path.
pub fn portflow(state: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("--state").arg(state);
    c.arg("--workflows").arg(repo().join("workflows"));
    c.env_remove("PORTFLOW_STATE");
    c.env("PORTFLOW_LOG", "error");
    // Human times in UTC whatever the machine's zone (tests that check zones say so).
    c.env("PORTFLOW_TZ", "UTC");
    c
}

/// Run to completion and capture.
pub fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse stdout as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        ),
    }
}

/// Write the subjects of a seeded simulated tenant (`users` users from `seed`) as CSV.
pub fn export_subjects(state: &Path, seed: u64, users: u32, csv: &Path) {
    let o = run(portflow(state)
        .args(["sim", "init", "--name", "subjects-source", "--seed"])
        .arg(seed.to_string())
        .arg("--users")
        .arg(users.to_string())
        .arg("--export")
        .arg(csv));
    assert!(o.status.success(), "sim init failed: {}", stderr(&o));
}

/// Write a DR → OC run file for a simulated tenant.
pub fn write_run_file(
    dir: &Path,
    name: &str,
    csv: &Path,
    seed: u64,
    users: u32,
    scale: u32,
    extra_backend: &str,
) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "workflow: direct-routing-to-operator-connect\n\
         label: test wave\n\
         backend:\n  kind: sim\n  seed: {seed}\n  users: {users}\n  latency: {{min: 30s, typical_max: 10m, tail_rate: 0}}\n  dirsync_interval: 10m\n  operator_upload_delay: {{min: 15m, max: 90m}}\n{extra_backend}\
         subjects: {{csv: {}}}\n\
         concurrency: 50\n\
         approvals: [operator-coordinated]\n\
         operator: {{name: Contoso Telecom, address_mode: tenant_assigns}}\n\
         time_scale: {scale}\n",
        csv.display()
    );
    if let Err(e) = std::fs::write(&path, text) {
        panic!("write {}: {e}", path.display());
    }
    path
}

/// Id of the only run in a state directory, if any.
pub fn only_run_id(state: &Path) -> Option<String> {
    let o = run(portflow(state).args(["--json", "status"]));
    if !o.status.success() {
        return None;
    }
    let v = json(&o);
    v["runs"].as_array()?.first()?["run"]
        .as_str()
        .map(str::to_string)
}

/// A small deterministic PRNG for picking kill instants (seed printed for replay).
pub struct Rng(pub u64);

impl Rng {
    /// Next value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + z % (hi - lo).max(1)
    }
}

/// A temporary directory with a state directory inside; removed on drop.
pub struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// The state directory (`<dir>/state`, not created).
    pub state: PathBuf,
}

impl Lab {
    /// A fresh temporary directory.
    pub fn new() -> Lab {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let state = dir.join("state");
        Lab {
            _tmp: tmp,
            dir,
            state,
        }
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Write a run file `name` of `workflow` on the simulated tenant and return
    /// its path as text: `backend` is the indented body of the `backend:`
    /// block after `kind: sim`, `extra` more top-level lines, written as given
    /// (the operator declaration included, e.g. [`SIM_OPERATOR`]).
    pub fn run_file(
        &self,
        name: &str,
        workflow: &str,
        backend: &str,
        csv: &Path,
        extra: &str,
    ) -> String {
        let path = self.path(name);
        write(
            &path,
            &format!(
                "workflow: {workflow}\nbackend:\n  kind: sim\n{backend}subjects: {{csv: {}}}\n\
                 concurrency: 50\n{extra}",
                csv.display()
            ),
        );
        path.to_string_lossy().into_owned()
    }
}

/// A run file's operator declaration: the simulated operator leaves addresses
/// to the tenant (ignored by workflows without an `address_mode` input).
pub const SIM_OPERATOR: &str = "operator: {name: Contoso Telecom, address_mode: tenant_assigns}\n";

// ---------------------------------------------------------------------------
// Helpers for the per-workflow integration tests (tests/workflows.rs,
// tests/crash_conferencing.rs).

/// Write a text file (parents must exist).
pub fn write(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        panic!("write {}: {e}", path.display());
    }
}

/// Run `portflow --state state <args>`; retry for a few seconds while a store
/// this test process just closed is still locked by sled's background threads
/// (exit 4, or a simulated tenant "in use").
pub fn pf(state: &Path, args: &[&str]) -> Output {
    let t0 = std::time::Instant::now();
    loop {
        let o = run(portflow(state).args(args));
        let locked = o.status.code() == Some(4)
            || (o.status.code() == Some(1) && stderr(&o).contains("in use"));
        if !locked || t0.elapsed() > std::time::Duration::from_secs(10) {
            return o;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `pf` with `--json` first; returns the exit code and the parsed document.
pub fn pf_json(state: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let o = pf(state, &full);
    (o.status.code().unwrap_or(-1), json(&o))
}

/// A seeded tenant opened in-process in its own temporary directory, to find
/// the seeded cohorts (tags) and exported rows of a tenant the binary will
/// seed identically (seeding depends only on the configuration).
pub fn probe_tenant(
    cfg: &portflow::backend::sim::SimConfig,
) -> (tempfile::TempDir, portflow::backend::sim::SimTenant) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = portflow::backend::sim::SimTenant::open(
        &dir.path().join("probe"),
        cfg,
        std::sync::Arc::new(portflow::clock::SystemClock),
    )
    .expect("open probe tenant");
    (dir, sim)
}

/// A simulator configuration for `profile` with `seed` and `users`.
pub fn sim_cfg(
    profile: portflow::backend::sim::Profile,
    seed: u64,
    users: u32,
) -> portflow::backend::sim::SimConfig {
    portflow::backend::sim::SimConfig {
        profile,
        seed,
        users,
        ..portflow::backend::sim::SimConfig::default()
    }
}

/// The stored run record (opens and closes the engine store).
pub fn run_record(state: &Path, run_id: &str) -> portflow::engine::run::RunRecord {
    let store = portflow::store::sled_store::SledStore::open(&state.join("engine"))
        .expect("open engine store");
    portflow::store::records::get_run(&store, run_id)
        .expect("read run")
        .expect("run exists")
}

/// Every instance of a run with its history, by subject (opens and closes the
/// engine store).
pub fn instances_with_events(
    state: &Path,
    run_id: &str,
) -> std::collections::BTreeMap<
    String,
    (
        portflow::engine::instance::Instance,
        Vec<portflow::engine::instance::Event>,
    ),
> {
    let store = portflow::store::sled_store::SledStore::open(&state.join("engine"))
        .expect("open engine store");
    let mut out = std::collections::BTreeMap::new();
    for inst in portflow::store::records::list_instances(&store, run_id).expect("instances") {
        let events = portflow::store::records::list_events(&store, &inst.key()).expect("events");
        out.insert(inst.subject.clone(), (inst, events));
    }
    out
}

/// The simulated tenant of a run (or a named tenant), opened in-process after
/// the binary exited, with the run's virtual clock so that what the tenant
/// does on its own (syncs, uploads) is applied up to the run's "now".
pub fn open_run_tenant(
    state: &Path,
    run_id: &str,
    tenant: &str,
    cfg: &portflow::backend::sim::SimConfig,
) -> portflow::backend::sim::SimTenant {
    let record = run_record(state, run_id);
    let clock: portflow::clock::SharedClock = match record.clock {
        Some(c) => std::sync::Arc::new(c),
        None => std::sync::Arc::new(portflow::clock::SystemClock),
    };
    portflow::backend::sim::SimTenant::open(&state.join("sim").join(tenant), cfg, clock)
        .expect("open the run's simulated tenant")
}

/// Step index of `id` in a run's composed workflow, by the order of step ids given.
pub fn step_index(steps: &[String], id: &str) -> usize {
    match steps.iter().position(|s| *s == id) {
        Some(i) => i,
        None => panic!("no step {id} in {steps:?}"),
    }
}

/// Step ids of a run's composed workflow (main, then the `then:` ones), in order.
pub fn step_ids(state: &Path, run_id: &str) -> Vec<String> {
    let record = run_record(state, run_id);
    let mut ids = Vec::new();
    for pin in std::iter::once(&record.workflow).chain(record.then.iter()) {
        let wf = portflow::spec::parse_workflow(&pin.text, &pin.origin)
            .expect("pinned workflow parses")
            .workflow;
        ids.extend(wf.steps.iter().map(|s| s.id.clone()));
    }
    ids
}

/// Start `portflow --state state <args>` in the background (output discarded).
pub fn spawn_pf(state: &Path, args: &[&str]) -> std::process::Child {
    portflow(state)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn portflow")
}

/// Stop a background portflow with SIGINT (as Ctrl-C) and return its exit code.
pub fn interrupt(mut child: std::process::Child) -> Option<i32> {
    // SAFETY: sending SIGINT to our own child process.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT");
    child.wait().expect("wait for portflow").code()
}

/// Start `run_file`, then SIGKILL `portflow run`/`resume` `kills` times, each after a
/// random pause in `pause_ms` (milliseconds); returns the run id. Panics if the run
/// ends before a kill (the run must outlast the schedule to prove anything).
pub fn kill_and_resume(
    state: &Path,
    run_file: &Path,
    kills: u32,
    rng: &mut Rng,
    pause_ms: (u64, u64),
) -> String {
    kill_and_resume_checking(state, run_file, kills, rng, pause_ms, |_| {})
}

/// [`kill_and_resume`], calling `after_kill(k)` once the process of kill `k`
/// is gone (to inspect the stores as the kill left them).
pub fn kill_and_resume_checking(
    state: &Path,
    run_file: &Path,
    kills: u32,
    rng: &mut Rng,
    pause_ms: (u64, u64),
    mut after_kill: impl FnMut(u32),
) -> String {
    let mut run_id: Option<String> = None;
    for k in 0..kills {
        let mut cmd = portflow(state);
        match &run_id {
            None => cmd.arg("run").arg(run_file),
            Some(id) => cmd.arg("resume").arg(id),
        };
        let mut child = match cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("spawn portflow: {e}"),
        };
        std::thread::sleep(std::time::Duration::from_millis(
            rng.range(pause_ms.0, pause_ms.1),
        ));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before kill {k}: make it longer");
        }
        // Child::kill sends SIGKILL on Unix.
        if let Err(e) = child.kill() {
            panic!("SIGKILL: {e}");
        }
        let _ = child.wait();
        after_kill(k);
        if run_id.is_none() {
            run_id = only_run_id(state);
        }
    }
    match run_id {
        Some(id) => id,
        None => panic!("no run was created before the kills"),
    }
}

/// Check a finished DR → OC run: every instance succeeded exactly once with a
/// gap-free, ordered history; the tenant saw no non-idempotent action twice and
/// ends right for every user. Returns how many idempotent actions were re-issued.
pub fn assert_dr_to_oc_done(state: &Path, id: &str, tenant_dir: &Path, expected: usize) -> usize {
    use portflow::backend::sim::{SimConfig, SimTenant};
    use portflow::backend::NumberType;
    use portflow::clock::SystemClock;
    use portflow::engine::instance::{EventKind, Status};
    use portflow::store::keys::InstanceKey;
    use portflow::store::records;
    use portflow::store::sled_store::SledStore;
    use std::collections::BTreeMap;

    // Engine side: every instance succeeded once, histories gap-free and ordered.
    let store = SledStore::open(&state.join("engine")).expect("open engine store");
    let instances = records::list_instances(&store, id).expect("instances");
    assert_eq!(instances.len(), expected);
    let mut reissued = 0;
    for inst in &instances {
        assert_eq!(
            inst.status,
            Status::Succeeded,
            "{}: {:?}",
            inst.subject,
            inst.status
        );
        let events = records::list_events(
            &store,
            &InstanceKey {
                run: id.to_string(),
                idx: inst.idx,
            },
        )
        .expect("events");
        assert_eq!(
            events.len() as u32,
            inst.seq,
            "{}: snapshot seq matches history",
            inst.subject
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u32, "{}: gap in history", inst.subject);
            if i > 0 {
                assert!(
                    e.at >= events[i - 1].at,
                    "{}: history out of order",
                    inst.subject
                );
            }
        }
        let ends = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Succeeded))
            .count();
        assert_eq!(ends, 1, "{}: exactly one terminal event", inst.subject);
        reissued += events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ActionIntent { reissue: true, .. }))
            .count();
    }
    drop(store);

    // Tenant side: no non-idempotent action twice; final state right for everyone.
    let sim = SimTenant::open(
        tenant_dir,
        &SimConfig::default(),
        std::sync::Arc::new(SystemClock),
    )
    .expect("open simulated tenant");
    let mut per_subject: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in sim.audit_log().expect("audit log") {
        if !e.op.info().idempotent && matches!(e.outcome, portflow::backend::sim::AuditOutcome::Ok)
        {
            *per_subject
                .entry((e.user.clone().unwrap_or_default(), e.op.to_string()))
                .or_insert(0) += 1;
        }
    }
    for ((user, op), n) in &per_subject {
        assert_eq!(*n, 1, "{op} ran {n} times for {user}");
    }
    for inst in &instances {
        let upn = inst.subject.clone();
        let number = inst.inputs["number"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let user = sim
            .user_state(&upn)
            .expect("user state")
            .expect("user exists");
        assert_eq!(
            user.cloud.line_uri.as_deref(),
            Some(number.as_str()),
            "{upn}: line URI"
        );
        assert!(user.cloud.enterprise_voice_enabled, "{upn}: EV on");
        assert_eq!(
            user.cloud.online_voice_routing_policy, None,
            "{upn}: DR routing policy removed"
        );
        assert_eq!(
            user.cloud.on_prem_line_uri, None,
            "{upn}: on-prem line cleared"
        );
        assert_eq!(user.ad_line_uri, None, "{upn}: AD line cleared");
        let n = sim
            .number_state(&number)
            .expect("number state")
            .expect("number exists");
        assert_eq!(
            n.number_type,
            NumberType::OperatorConnect,
            "{upn}: number is Operator Connect"
        );
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(user.cloud.id.as_str()),
            "{upn}: assigned to the user"
        );
        assert_eq!(n.activation_state, "Activated", "{upn}");
    }
    reissued
}

/// A `portflow serve` child and where it listens.
pub struct Daemon {
    /// The process.
    pub child: std::process::Child,
    /// `host:port`.
    pub addr: String,
    /// API token.
    pub token: String,
}

/// Start `portflow serve --listen 127.0.0.1:0 <args>` and wait until it has
/// written its daemon.json (a killed one's stale file is ignored).
// The child is handed to the caller inside `Daemon`, which waits for it.
#[allow(clippy::zombie_processes)]
pub fn start_daemon(state: &Path, args: &[&str]) -> Daemon {
    let mut child = portflow(state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve");
    let file = state.join("daemon.json");
    let t0 = std::time::Instant::now();
    loop {
        if let Some(doc) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|d| d["pid"].as_u64() == Some(u64::from(child.id())))
        {
            return Daemon {
                addr: doc["address"].as_str().expect("address").to_string(),
                token: doc["token"].as_str().expect("token").to_string(),
                child,
            };
        }
        if t0.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// SIGTERM the daemon and return its exit code.
pub fn stop_daemon(mut d: Daemon) -> Option<i32> {
    // SAFETY: signalling our own child.
    let rc = unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM");
    d.child.wait().expect("wait for the daemon").code()
}

/// SIGKILL the daemon.
pub fn kill_daemon(mut d: Daemon) {
    d.child.kill().expect("SIGKILL");
    let _ = d.child.wait();
}

/// A stored instance status's phase (or state, when not running) and step index.
pub fn phase_and_step(status: &serde_json::Value) -> (String, Option<u64>) {
    (
        status["phase"]["phase"]
            .as_str()
            .or(status["state"].as_str())
            .unwrap_or_default()
            .to_string(),
        status["step"].as_u64(),
    )
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A run file assigning emergency locations (fast) on a shared simulated tenant.
pub fn locations_run_file(dir: &Path) -> std::path::PathBuf {
    let csv = repo().join("examples/emergency-locations.csv");
    let path = dir.join("locations.yaml");
    write(
        &path,
        &format!(
            "workflow: assign-emergency-location\n\
             backend: {{kind: sim, profile: operator_connect, seed: 42, users: 100, tenant: loc}}\n\
             subjects: {{csv: {}}}\n\
             concurrency: 50\n\
             time_scale: 600\n",
            csv.display()
        ),
    );
    path
}

/// Rewrite a stored run and its instances in place (opens and closes the engine
/// store): for tests that need states the engine does not produce on demand,
/// such as numbers out of service. Instances keep no timer.
pub fn edit_run(
    state: &Path,
    run_id: &str,
    edit: impl FnOnce(
        &mut portflow::engine::run::RunRecord,
        &mut [portflow::engine::instance::Instance],
    ),
) {
    use portflow::store::{records, Batch, Store};
    let store = portflow::store::sled_store::SledStore::open(&state.join("engine"))
        .expect("open engine store");
    let mut record = records::get_run(&store, run_id)
        .expect("read run")
        .expect("run exists");
    let old = records::list_instances(&store, run_id).expect("instances");
    let mut new = old.clone();
    edit(&mut record, &mut new);
    let mut b = Batch::default();
    records::put_run(&mut b, &record).expect("our records encode");
    for (o, n) in old.iter().zip(new.iter_mut()) {
        n.due = None;
        records::put_replaced_instance(&mut b, o, n, &[]).expect("our records encode");
    }
    store.apply(&b).expect("write");
    store.sync().expect("sync");
}

/// A scaled clock standing still at `at` (ms since the epoch): a run's clock
/// that makes durations in outputs exact.
pub fn frozen_clock(at: i64) -> portflow::clock::ScaledClock {
    use portflow::clock::Clock;
    portflow::clock::ScaledClock {
        real_anchor: portflow::clock::SystemClock.now(),
        virtual_anchor: portflow::clock::Timestamp(at),
        scale: 1e-9,
    }
}

/// One HTTP/1.1 request on loopback; returns (status, JSON body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the daemon");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut s, req.as_bytes()).expect("send");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A running `portflow sim serve` and the URL it serves (killed when dropped).
pub struct SimServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stopped: bool,
}

impl SimServer {
    /// SIGTERM and its exit code.
    pub fn stop(mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM");
        self.stopped = true;
        self.child.wait().expect("wait for sim serve").code()
    }
}

impl Drop for SimServer {
    // A failed test must not leave the server running.
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `portflow sim serve --name name --config cfg` on a free loopback port.
pub fn start_sim_serve(state: &Path, name: &str, cfg: &Path) -> SimServer {
    use std::io::BufRead;
    let mut child = portflow(state)
        .args([
            "sim",
            "serve",
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sim serve");
    let out = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    let first = match lines.next() {
        Some(Ok(l)) => l,
        other => {
            let _ = child.kill();
            panic!("sim serve printed no address: {other:?}");
        }
    };
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    SimServer {
        child,
        url,
        stopped: false,
    }
}

/// Every file under `dir`, as bytes.
pub fn files_under(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
}

/// What would betray a credential: a JWT (token or client assertion) or the
/// private key's PEM body.
pub fn secret_markers() -> Vec<Vec<u8>> {
    let pem = std::fs::read_to_string(repo().join("tests/fixtures/graph/test-app-key.pem"))
        .expect("test key");
    let mut m: Vec<Vec<u8>> = ["eyJhbGci", "eyJ0eXAi", "eyJraWQi", "Bearer ey"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    m.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 40)
            .take(3)
            .map(|l| l.as_bytes().to_vec()),
    );
    m
}

pub fn assert_no_secret(what: &str, bytes: &[u8]) {
    for m in secret_markers() {
        assert!(
            !bytes.windows(m.len()).any(|w| w == m.as_slice()),
            "{what} holds a credential ({:?}…)",
            String::from_utf8_lossy(&m[..8.min(m.len())])
        );
    }
}
