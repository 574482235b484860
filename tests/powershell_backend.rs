//! The PowerShell backend end to end: every shipped workflow on `kind:
//! microsoft`, the Graph part on `portflow sim serve`, the PowerShell parts
//! (`teams` local, `onprem` over "ssh") on the test host
//! (`portflow-fake-pwsh`, which speaks the host protocol and acts on the same
//! served tenant). Faults on both sides, SIGKILLs of the run; outcomes
//! compared with the plain simulator; no secret in state, output, or the host
//! processes' command lines and environments.

#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_yaml::{Mapping, Value};

const TENANT_ID: &str = "2f1c0000-0000-4000-8000-000000000001";
const CLIENT_ID: &str = "9a3e0000-0000-4000-8000-000000000002";
const FAKE: &str = env!("CARGO_BIN_EXE_portflow-fake-pwsh");
/// The served app's client secret (the test's own "person" signs in with it).
const APP_SECRET: &str = "sim-app-secret-1f0e4c2b9a";
/// Host faults (on every operation but the one non-idempotent cmdlet: a host
/// dying mid-send asks a person, which the plain simulator never does; its
/// own test below).
const HOST_FAULTS: &str = "noise=0.3,wrong_id=0.01,crash=0.01,hang=0.003,garble=0.005";
/// The host operations `HOST_FAULTS` strike.
fn faulted_ops() -> String {
    portflow::backend::powershell::ops::HOST_OPS
        .iter()
        .map(|o| o.name)
        .filter(|n| *n != "send_dialin_email")
        .collect::<Vec<_>>()
        .join(",")
}
/// Graph-side faults, and every token refused 20 virtual minutes in.
const GRAPH_FAULTS: &str = "  throttle_rate: 0.02\n  throttle_retry_after_share: 0.5\n  \
                            throttle_retry_after: 2s\n  unavailable_rate: 0.01\n  \
                            lro_failure_rate: 0.02\n  expire_tokens_after: 20m\n";

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

/// An example run file, parsed.
fn example(name: &str) -> Mapping {
    let text = std::fs::read_to_string(repo().join("examples").join(format!("{name}.yaml")))
        .expect("example");
    match serde_yaml::from_str::<Value>(&text).expect("example YAML") {
        Value::Mapping(m) => m,
        other => panic!("{name}: not a mapping: {other:?}"),
    }
}

/// The example with its CSV path made absolute.
fn with_absolute_csv(mut m: Mapping) -> Mapping {
    if let Some(Value::Mapping(s)) = m.get_mut(key("subjects")) {
        if let Some(Value::String(csv)) = s.get(key("csv")).cloned() {
            let abs = repo().join("examples").join(csv);
            s.insert(key("csv"), key(&abs.display().to_string()));
        }
    }
    m
}

/// `sim serve` with the example's simulated tenant, its time scale, the
/// test app (certificate and secret) and `faults`.
fn serve_example(lab: &Lab, name: &str, ex: &Mapping, faults: &str) -> SimServer {
    let mut sim = match ex.get(key("backend")) {
        Some(Value::Mapping(b)) => b.clone(),
        _ => Mapping::new(),
    };
    sim.remove(key("kind"));
    sim.remove(key("tenant"));
    let scale = ex
        .get(key("time_scale"))
        .and_then(Value::as_f64)
        .unwrap_or(600.0);
    let secret = lab.path(&format!("{name}-secret"));
    write(&secret, APP_SECRET);
    let mut cfg = Mapping::new();
    cfg.insert(key("tenant_id"), key(TENANT_ID));
    cfg.insert(key("sim"), Value::Mapping(sim));
    cfg.insert(key("time_scale"), Value::from(scale));
    let app = format!(
        "client_id: {CLIENT_ID}\ncertificate: {}\nclient_secret: {{file: {}}}\n",
        repo()
            .join("tests/fixtures/graph/test-app-cert.pem")
            .display(),
        secret.display()
    );
    cfg.insert(key("app"), serde_yaml::from_str(&app).expect("app"));
    let mut text = serde_yaml::to_string(&Value::Mapping(cfg)).expect("serve YAML");
    text.push_str(&format!("faults:\n{faults}"));
    let path = lab.path(&format!("{name}-serve.yaml"));
    write(&path, &text);
    start_sim_serve(&lab.path(&format!("{name}-server")), name, &path)
}

/// The `powershell:` block: `teams` local, `onprem` through the "ssh" client
/// (the test host ignores ssh's arguments), both on the test host.
fn powershell_block(url: &str, faults: &str, fault_ops: &str, log: &Path) -> Value {
    let env = format!(
        "{{PORTFLOW_FAKE_PWSH_SIM: '{url}', PORTFLOW_FAKE_PWSH_FAULTS: '{faults},seed=7', \
         PORTFLOW_FAKE_PWSH_LOG: '{}', PORTFLOW_FAKE_PWSH_FAULT_OPS: '{fault_ops}'}}",
        log.display()
    );
    serde_yaml::from_str(&format!(
        "teams: {{runner: local, program: '{FAKE}', pool: 2, timeout: 2s, connect_timeout: 10s, env: {env}}}\n\
         onprem:\n  runner: ssh\n  ssh: {{host: sfbadmin01.corp.contoso.com, user: svc-portflow, program: '{FAKE}'}}\n  \
         script: 'C:\\portflow\\host.ps1'\n  pool: 2\n  timeout: 2s\n  connect_timeout: 10s\n  env: {env}\n"
    ))
    .expect("powershell block")
}

/// The example on `kind: microsoft` against `url`.
fn microsoft_run_file(
    lab: &Lab,
    name: &str,
    ex: &Mapping,
    url: &str,
    (faults, fault_ops): (&str, &str),
) -> PathBuf {
    let mut m = with_absolute_csv(ex.clone());
    let backend = format!(
        "kind: microsoft\ntenant_id: {TENANT_ID}\nclient_id: {CLIENT_ID}\n\
         credential: {{certificate: {}}}\ngraph: {{base_url: '{url}', login_url: '{url}'}}\n",
        repo().join("tests/fixtures/graph/test-app.pem").display()
    );
    let mut backend: Mapping = serde_yaml::from_str(&backend).expect("backend");
    backend.insert(
        key("powershell"),
        powershell_block(
            url,
            faults,
            fault_ops,
            &lab.path(&format!("{name}-host.log")),
        ),
    );
    m.insert(key("backend"), Value::Mapping(backend));
    let path = lab.path(&format!("{name}-microsoft.yaml"));
    write(
        &path,
        &serde_yaml::to_string(&Value::Mapping(m)).expect("run file"),
    );
    path
}

/// Outcome of an instance without the backend's wording: the state and the
/// step's id; the status itself for a report.
fn outcome(steps: &[String], s: &portflow::engine::instance::Status) -> String {
    use portflow::engine::instance::Status;
    let at = |i: &usize| steps.get(*i).cloned().unwrap_or_else(|| i.to_string());
    match s {
        Status::Succeeded => "succeeded".into(),
        Status::Failed { step, .. } => format!("failed at {}", at(step)),
        Status::RolledBack { step, .. } => format!("rolled back at {}", at(step)),
        other => {
            let d = format!("{other:?}");
            d.split([' ', '{']).next().unwrap_or("").to_string()
        }
    }
}

/// (subject, outcome, status as stored) of every instance.
fn outcomes(state: &Path, id: &str) -> Vec<(String, String, String)> {
    let steps = step_ids(state, id);
    instances_with_events(state, id)
        .into_iter()
        .map(|(s, (i, _))| (s, outcome(&steps, &i.status), format!("{:?}", i.status)))
        .collect()
}

/// What differs from the plain simulator by design, in the plain run's terms:
/// `Get-CsOnlineDialInConferencingUser` returns nothing for users of a
/// third-party audio-conferencing provider, so they are refused at the
/// licence check, one step before the provider check the simulator reaches.
/// And a manual conference ID reset the admin center refuses (where the
/// simulator's own reset fails the step) is cancelled by the person.
fn as_on_powershell(outcome: &str) -> String {
    if outcome == "failed at reset" {
        return "Cancelled".into();
    }
    outcome
        .replace(
            "failed at conferencing-check-provider",
            "failed at conferencing-check-enabled",
        )
        .replace("failed at check-provider", "failed at check-enabled")
}

/// The example on the plain simulator: its outcomes.
fn plain_outcomes(lab: &Lab, name: &str, ex: &Mapping) -> Vec<(String, String, String)> {
    let state = lab.path(&format!("{name}-plain"));
    let file = lab.path(&format!("{name}-plain.yaml"));
    write(
        &file,
        &serde_yaml::to_string(&Value::Mapping(with_absolute_csv(ex.clone()))).expect("YAML"),
    );
    let o = run(portflow(&state).arg("run").arg(&file));
    assert!(
        matches!(o.status.code(), Some(0 | 1 | 3)),
        "{name} plain: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let id = only_run_id(&state).expect("plain run");
    outcomes(&state, &id)
}

/// [`common::assert_no_secret`], and the served app's client secret.
fn assert_no_secret_or_app_secret(what: &str, bytes: &[u8]) {
    assert_no_secret(what, bytes);
    let m = APP_SECRET.as_bytes();
    assert!(
        !bytes.windows(m.len()).any(|w| w == m),
        "{what} holds the app's client secret"
    );
}

/// How often each non-idempotent action succeeded on the served tenant in
/// `dir` (opened after its server stopped), by (user, operation).
fn successful_non_idempotent(dir: &Path) -> std::collections::BTreeMap<(String, String), usize> {
    let sim = portflow::backend::sim::SimTenant::open(
        dir,
        &portflow::backend::sim::SimConfig::default(),
        std::sync::Arc::new(portflow::clock::SystemClock),
    )
    .expect("open the served tenant");
    let mut once = std::collections::BTreeMap::new();
    for e in sim.audit_log().expect("audit log") {
        if !e.op.info().idempotent && matches!(e.outcome, portflow::backend::sim::AuditOutcome::Ok)
        {
            *once
                .entry((e.user.clone().unwrap_or_default(), e.op.to_string()))
                .or_insert(0) += 1;
        }
    }
    once
}

/// A host process: its pid, `/proc/<pid>/cmdline` and `/proc/<pid>/environ`.
type HostProc = (u32, Vec<u8>, Vec<u8>);

/// The command lines and environments of the running test hosts.
fn host_processes() -> Vec<HostProc> {
    let fake = std::fs::canonicalize(FAKE).expect("test host path");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(e.path().join("exe")).ok();
        if exe.as_deref() != Some(fake.as_path()) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        out.push((pid, cmdline, environ));
    }
    out
}

/// Every request the test hosts logged, parsed.
fn host_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A run in the background, with a person visiting each subject every half
/// second (`visit(run, subject)` says whether they are done with it), until
/// the run exits. Returns the run id and the host processes seen meanwhile.
fn run_with_person(
    state: &Path,
    file: &Path,
    subjects: &[String],
    mut visit: impl FnMut(&str, &str) -> bool,
) -> (String, Vec<HostProc>) {
    let out = file.with_extension("out");
    let err = file.with_extension("err");
    let mut child = portflow(state)
        .arg("run")
        .arg(file)
        .env("PORTFLOW_TEST_CLIENT_SECRET", APP_SECRET)
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn run");
    // `run <id>: …` is its first line.
    let id = wait_for(60, "the run id", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "the run ended at once ({st}): {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        let text = std::fs::read_to_string(&out).ok()?;
        let first = text.lines().next()?;
        let id = first.strip_prefix("run ")?.split(':').next()?;
        Some(id.to_string())
    });
    let mut left: Vec<String> = subjects.to_vec();
    let mut seen_hosts = Vec::new();
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if seen_hosts.is_empty() {
            seen_hosts = host_processes();
        }
        let mut still = Vec::new();
        for s in left {
            if !visit(&id, &s) {
                still.push(s);
            }
        }
        left = still;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "the run did not end; waiting for {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    (id, seen_hosts)
}

/// `portflow signal <run> <subject> <name>` succeeded.
fn signal(state: &Path, run: &str, subject: &str, name: &str) -> bool {
    let o = pf(
        state,
        &["signal", run, subject, name, "--by", "migration engineer"],
    );
    o.status.code() == Some(0)
}

/// Sign in as the app with its secret and perform `op` on the served tenant
/// (what a person does in the admin center): the tenant's error, if any.
fn act_on_tenant(url: &str, op: serde_json::Value) -> Result<(), String> {
    let addr = url.trim_start_matches("http://");
    let form = format!(
        "client_id={CLIENT_ID}&client_secret={APP_SECRET}&grant_type=client_credentials&scope=48ac35b8-9aa8-4d74-927d-1f4a14a0b239%2F.default"
    );
    let token = form_post(addr, &format!("/{TENANT_ID}/oauth2/v2.0/token"), &form);
    let token = token["access_token"].as_str().expect("a token").to_string();
    let body = serde_json::json!({"op": op, "key": null, "attempt": 1}).to_string();
    let (code, reply) = http(
        addr,
        "POST",
        "/portflow-sim/v1/execute",
        Some(&token),
        &body,
    );
    assert_eq!(code, 200, "{reply}");
    if reply["ok"] == true {
        Ok(())
    } else {
        Err(reply["error"]["message"]
            .as_str()
            .unwrap_or("refused")
            .to_string())
    }
}

fn form_post(addr: &str, path: &str, body: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}

fn csv_subjects(ex: &Mapping) -> Vec<String> {
    let m = with_absolute_csv(ex.clone());
    let csv = m
        .get(key("subjects"))
        .and_then(|s| s.get(key("csv")))
        .and_then(Value::as_str)
        .expect("csv");
    std::fs::read_to_string(csv)
        .expect("csv")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks every example shares: outcomes as on the plain simulator, no
/// non-idempotent action twice, no secret in state or backup.
fn assert_like_plain(
    lab: &Lab,
    name: &str,
    ex: &Mapping,
    state: &Path,
    id: &str,
    server: SimServer,
) {
    let got = outcomes(state, id);
    let calls = host_log(&lab.path(&format!("{name}-host.log")))
        .iter()
        .filter(|r| r["type"] == "call")
        .count();
    let mut tally: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, o, _) in &got {
        *tally.entry(o.as_str()).or_default() += 1;
    }
    eprintln!(
        "{name}: {} subjects {tally:?}, {calls} host calls",
        got.len()
    );
    assert_eq!(server.stop(), Some(0), "sim serve stops cleanly");
    let tenant_dir = lab.path(&format!("{name}-server")).join("sim").join(name);
    let once = successful_non_idempotent(&tenant_dir);
    for ((user, op), n) in &once {
        assert_eq!(*n, 1, "{name}: {op} ran {n} times for {user}");
    }
    let want = plain_outcomes(lab, name, ex);
    assert_eq!(got.len(), want.len(), "{name}: subjects");
    let differ: Vec<String> = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g.0 != w.0 || g.1 != as_on_powershell(&w.1))
        .map(|(g, w)| format!("{}: {} ({}) / plain: {} ({})", g.0, g.1, g.2, w.1, w.2))
        .collect();
    assert!(
        differ.is_empty(),
        "{name}: outcomes differ from the plain simulator:\n{}",
        differ.join("\n")
    );
    let o = pf(
        state,
        &[
            "backup",
            &lab.path(&format!("{name}-backup")).to_string_lossy(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let mut files = Vec::new();
    files_under(state, &mut files);
    files_under(&lab.path(&format!("{name}-backup")), &mut files);
    if let Ok(b) = std::fs::read(lab.path(&format!("{name}-host.log"))) {
        files.push((lab.path("host.log"), b));
    }
    assert!(!files.is_empty());
    for (p, bytes) in &files {
        assert_no_secret_or_app_secret(&p.display().to_string(), bytes);
    }
}

fn assert_hosts_clean(name: &str, hosts: &[HostProc], required: bool) {
    assert!(
        !required || !hosts.is_empty(),
        "{name}: saw no host process"
    );
    for (pid, cmdline, environ) in hosts {
        assert_no_secret_or_app_secret(&format!("{name}: /proc/{pid}/cmdline"), cmdline);
        assert_no_secret_or_app_secret(&format!("{name}: /proc/{pid}/environ"), environ);
        let env = String::from_utf8_lossy(environ);
        assert!(
            !env.contains("PORTFLOW_TEST_CLIENT_SECRET"),
            "{name}: portflow's environment leaked into the host"
        );
    }
}

/// A lab with the example's tenant served (`graph_faults`) and its run file
/// on `kind: microsoft` (`host`: the test host's faults and the operations
/// they strike).
fn prepare(
    name: &str,
    ex_name: &str,
    graph_faults: &str,
    host: (&str, &str),
) -> (Lab, Mapping, SimServer, PathBuf) {
    let lab = Lab::new();
    let ex = example(ex_name);
    let server = serve_example(&lab, name, &ex, graph_faults);
    let file = microsoft_run_file(&lab, name, &ex, &server.url, host);
    (lab, ex, server, file)
}

/// A wave killed twice and resumed to its end.
fn killed_wave(name: &str, ex_name: &str) {
    let (lab, ex, server, file) =
        prepare(name, ex_name, GRAPH_FAULTS, (HOST_FAULTS, &faulted_ops()));
    let mut rng = Rng(0x6a09_e667 ^ name.len() as u64);
    let id = kill_and_resume(&lab.state, &file, 2, &mut rng, (1_500, 3_000));
    // With debug logs (host noise, stderr, every call): no secret in them.
    let log_file = lab.path(&format!("{name}-resume.log"));
    let mut child = portflow(&lab.state)
        .args(["resume", &id])
        .env("PORTFLOW_TEST_CLIENT_SECRET", APP_SECRET)
        .env("PORTFLOW_LOG", "portflow=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_file).expect("log file"))
        .spawn()
        .expect("resume");
    // The host processes, seen while the resume runs (it may be short).
    let mut hosts = Vec::new();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if hosts.is_empty() {
            hosts = host_processes();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        matches!(status.code(), Some(0 | 1 | 3)),
        "{name}: resume {status}"
    );
    assert_hosts_clean(name, &hosts, false);
    let logged = std::fs::read(&log_file).expect("debug log");
    assert!(
        String::from_utf8_lossy(&logged).contains("PowerShell host output (not a reply)"),
        "{name}: the debug log shows the hosts' noise"
    );
    assert_no_secret_or_app_secret(&format!("{name}: resume's debug log"), &logged);
    let log = host_log(&lab.path(&format!("{name}-host.log")));
    assert!(
        log.iter().any(|r| r["type"] == "call"),
        "{name}: the hosts were called"
    );
    // Hosts sign in again: before the earlier token expires, and after the
    // served tenant refused every token issued in its first 20 minutes.
    let mut connects: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for r in log.iter().filter(|r| r["type"] == "connect") {
        *connects.entry(r["pid"].as_u64().unwrap_or(0)).or_default() += 1;
    }
    assert!(
        connects.values().any(|n| *n >= 2),
        "{name}: no host connected twice: {connects:?}"
    );
    // Faults restarted hosts: more processes than the two pools hold.
    assert!(
        connects.len() > 4,
        "{name}: {} host processes",
        connects.len()
    );
    assert_like_plain(&lab, name, &ex, &lab.state, &id, server);
}

#[test]
fn direct_routing_to_operator_connect_through_graph_and_powershell() {
    killed_wave("dr", "dr-to-oc");
}

#[test]
fn onprem_to_online_through_the_skype_for_business_host() {
    killed_wave("sfb", "onprem-to-online");
}

#[test]
fn emergency_locations_through_powershell() {
    let (lab, ex, server, file) = prepare(
        "loc",
        "emergency-locations",
        GRAPH_FAULTS,
        (HOST_FAULTS, &faulted_ops()),
    );
    let o = run(portflow(&lab.state).arg("run").arg(&file));
    assert!(
        matches!(o.status.code(), Some(0 | 1 | 3)),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert_no_secret_or_app_secret("run output", &[o.stdout, o.stderr].concat());
    let id = only_run_id(&lab.state).expect("run");
    assert_like_plain(&lab, "loc", &ex, &lab.state, &id, server);
}

#[test]
fn calling_plans_to_operator_connect_ends_its_port_wait_by_signal() {
    let (lab, ex, server, file) = prepare(
        "cp",
        "cp-to-oc",
        GRAPH_FAULTS,
        (HOST_FAULTS, &faulted_ops()),
    );
    // No API reads the operator's port order: the engineer confirms it.
    let o = pf(&lab.state, &["plan", &file.to_string_lossy()]);
    assert!(
        stdout(&o).contains("for signal `port-completed` only"),
        "{}",
        stdout(&o)
    );
    let subjects = csv_subjects(&ex);
    let state = lab.state.clone();
    let (id, hosts) = run_with_person(&lab.state, &file, &subjects, |run, user| {
        signal(&state, run, user, "port-completed")
    });
    assert_hosts_clean("cp", &hosts, true);
    assert_like_plain(&lab, "cp", &ex, &lab.state, &id, server);
}

#[test]
fn conferencing_e_mails_are_sent_once_through_powershell() {
    let (lab, ex, server, file) = prepare(
        "conf",
        "conferencing-info",
        GRAPH_FAULTS,
        (HOST_FAULTS, &faulted_ops()),
    );
    let o = run(portflow(&lab.state).arg("run").arg(&file));
    assert!(
        matches!(o.status.code(), Some(0 | 1 | 3)),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let id = only_run_id(&lab.state).expect("run");
    assert_like_plain(&lab, "conf", &ex, &lab.state, &id, server);
}

#[test]
fn conference_id_resets_are_manual_and_verified_through_powershell() {
    let (lab, ex, server, file) = prepare(
        "reset",
        "reset-conference-id",
        GRAPH_FAULTS,
        (HOST_FAULTS, &faulted_ops()),
    );
    let subjects = csv_subjects(&ex);
    let url = server.url.clone();
    let state = lab.state.clone();
    // At each manual task the person resets the ID in the admin center, then
    // says `done` (the wait sees the new ID through
    // Get-CsOnlineDialInConferencingUser); a reset the admin center refuses
    // they cancel, with the reason.
    let (id, hosts) = run_with_person(&lab.state, &file, &subjects, |run, user| {
        let (code, v) = pf_json(&state, &["show", run, user]);
        let st = &v["instance"]["status"];
        if code != 0 || st["state"] != "running" {
            return code == 0;
        }
        if st["phase"]["phase"] != "blocked" || st["phase"]["signal"] != "done" {
            return false;
        }
        match act_on_tenant(
            &url,
            serde_json::json!({"op": "reset_conference_id", "user": user}),
        ) {
            Ok(()) => signal(&state, run, user, "done"),
            Err(why) => {
                let reason = format!("the admin center refused the reset: {why}");
                pf(&state, &["cancel", run, user, "--reason", &reason])
                    .status
                    .code()
                    == Some(0)
            }
        }
    });
    assert_hosts_clean("reset", &hosts, true);
    assert_like_plain(&lab, "reset", &ex, &lab.state, &id, server);
}

/// A host that dies or hangs while sending conferencing e-mails (the one
/// non-idempotent cmdlet): portflow never sends again on its own; the
/// subject asks a person, saying the outcome is unknown. No mail twice.
#[test]
fn a_send_in_doubt_asks_a_person_and_never_repeats() {
    let (lab, _, server, file) = prepare(
        "doubt",
        "conferencing-info",
        "  throttle_rate: 0\n",
        (
            "noise=0.3,crash=0.3,hang=0.1,wrong_id=0.1",
            "send_dialin_email",
        ),
    );
    let o = run(portflow(&lab.state).arg("run").arg(&file));
    assert!(
        matches!(o.status.code(), Some(1 | 3)),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let id = only_run_id(&lab.state).expect("run");
    let got = outcomes(&lab.state, &id);
    let doubt: Vec<&(String, String, String)> = got
        .iter()
        .filter(|(_, o, _)| o == "NeedsAttention")
        .collect();
    assert!(!doubt.is_empty(), "some sends were in doubt: {got:?}");
    for (s, _, status) in &doubt {
        assert!(
            status.contains("whether the cmdlet ran is unknown")
                && status.contains("send_conferencing_info"),
            "{s}: {status}"
        );
    }
    assert_eq!(server.stop(), Some(0));
    let tenant_dir = lab.path("doubt-server").join("sim").join("doubt");
    let sends: std::collections::BTreeMap<String, usize> = successful_non_idempotent(&tenant_dir)
        .into_iter()
        .filter(|((_, op), _)| op == "send_conferencing_info")
        .map(|((user, _), n)| (user, n))
        .collect();
    assert!(sends.values().all(|n| *n == 1), "{sends:?}");
    // Those that succeeded sent exactly one mail.
    for (s, o, _) in &got {
        if o == "succeeded" {
            assert_eq!(sends.get(s), Some(&1), "{s}");
        }
    }
}

/// `doctor` starts one host per part the workflow uses, says what it runs,
/// and reads each PowerShell read once; a host that cannot start is named.
#[test]
fn doctor_starts_and_checks_the_powershell_hosts() {
    let (lab, _, server, file) = prepare(
        "doc",
        "onprem-to-online",
        "  throttle_rate: 0\n",
        ("noise=0.3", ""),
    );
    let o = pf(&lab.state, &["doctor", &file.to_string_lossy()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}\n{}", stderr(&o));
    assert!(
        text.contains("powershell.teams (local ")
            && text.contains("MicrosoftTeams 7.0.0, connected"),
        "{text}"
    );
    assert!(
        text.contains("powershell.onprem (ssh sfbadmin01.corp.contoso.com)")
            && text.contains("SkypeForBusiness 7.0.0, connected"),
        "{text}"
    );
    for op in ["get_onprem_user", "move_user", "get_user"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(op) && l.contains("available")),
            "{op}: {text}"
        );
    }
    assert!(
        text.contains("Get-CsUser -Identity") && text.contains("read the first subject"),
        "{text}"
    );
    assert_no_secret_or_app_secret("doctor", &[o.stdout.clone(), o.stderr.clone()].concat());
    assert!(!lab.state.join("engine").exists(), "doctor writes nothing");

    // No PowerShell where the run file says: named, exit 3.
    let broken =
        std::fs::read_to_string(&file)
            .expect("run file")
            .replacen(FAKE, "/nonexistent/pwsh", 1);
    let bad = lab.path("broken.yaml");
    write(&bad, &broken);
    let o = pf(&lab.state, &["doctor", &bad.to_string_lossy()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{text}\n{}", stderr(&o));
    assert!(
        text.contains("could not be started") && text.contains("/nonexistent/pwsh"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("get_user") && l.contains("unknown")),
        "{text}"
    );
    assert_eq!(server.stop(), Some(0));
}

/// UPNs, numbers and location ids that would be code if pasted into a
/// PowerShell command line reach the host as data, byte for byte.
#[test]
fn hostile_subject_data_reaches_the_host_as_data() {
    let lab = Lab::new();
    let ex = example("emergency-locations");
    let server = serve_example(&lab, "evil", &ex, "  throttle_rate: 0\n");
    let users = ["a'+$b+'c@contoso.com", "o'brien`$x`{1}|&=@contoso.com"];
    let locations = [
        "x'; Remove-CsOnlineUser -Identity y; '$(whoami)",
        "loc\"@ $env:PATH `n é😀 ${a}",
    ];
    // Real rows of the example, with hostile users (their get_user fails)
    // or hostile location ids (read after the user).
    let rows: Vec<Vec<String>> =
        std::fs::read_to_string(repo().join("examples/emergency-locations.csv"))
            .expect("csv")
            .lines()
            .skip(1)
            .take(4)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
    let csv = lab.path("evil.csv");
    let mut text = String::from("user,number,location_id\n");
    for (i, u) in users.iter().enumerate() {
        text.push_str(&format!("{u},{},{}\n", rows[i][1], rows[i][2]));
    }
    for (i, l) in locations.iter().enumerate() {
        let r = &rows[2 + i];
        text.push_str(&format!(
            "{},{},\"{}\"\n",
            r[0],
            r[1],
            l.replace('"', "\"\"")
        ));
    }
    write(&csv, &text);
    let mut m = ex.clone();
    let mut subjects = Mapping::new();
    subjects.insert(key("csv"), key(&csv.display().to_string()));
    m.insert(key("subjects"), Value::Mapping(subjects));
    let file = microsoft_run_file(&lab, "evil", &m, &server.url, ("noise=0.3", ""));
    // Every read through PowerShell, so the number goes there too.
    let routed = std::fs::read_to_string(&file).expect("run file").replace(
        "  powershell:\n",
        "  routes: {get_number: powershell}\n  powershell:\n",
    );
    write(&file, &routed);
    let o = pf(&lab.state, &["--json", "plan", &file.to_string_lossy()]);
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let log = host_log(&lab.path("evil-host.log"));
    let calls: Vec<&serde_json::Value> = log.iter().filter(|r| r["type"] == "call").collect();
    for u in users {
        assert!(
            calls.iter().any(|c| c["args"]["Identity"] == u),
            "{u} reached the host as Identity: {calls:?}"
        );
    }
    assert!(
        calls.iter().any(|c| c["op"] == "get_number_assignment"
            && c["args"]["TelephoneNumber"] == rows[0][1].as_str()),
        "{calls:?}"
    );
    for l in locations {
        assert!(
            calls
                .iter()
                .any(|c| c["op"] == "get_lis_location" && c["args"]["LocationId"] == l),
            "{l:?} reached the host as LocationId: {calls:?}"
        );
    }
    assert_eq!(server.stop(), Some(0));
}

/// Bad `powershell:` and `routes:` values are refused at their
/// `file:line:col`, before anything starts.
#[test]
fn bad_powershell_settings_are_refused_where_they_are_written() {
    let lab = Lab::new();
    let file = lab.path("bad.yaml");
    write(
        &file,
        &format!(
            "workflow: send-conferencing-info\n\
             backend:\n  kind: microsoft\n  tenant_id: {TENANT_ID}\n  client_id: {CLIENT_ID}\n  \
             credential: {{certificate: /etc/portflow/app.pem}}\n  \
             powershell:\n    teams: {{timeout: 5m}}\n    onprem: {{runner: ssh, ssh: {{host: '-oProxyCommand=x'}}, script: 'C:\\a&b.ps1'}}\n  \
             routes: {{move_user: graph, get_number: manual}}\n\
             subjects: {{csv: {}}}\n",
            repo().join("examples/conferencing-users.csv").display()
        ),
    );
    let o = pf(&lab.state, &["validate", &file.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        "bad.yaml:8:22: backend.powershell.teams.timeout: 5m is not below the run's call_timeout",
        "powershell.onprem.ssh.host: a host name",
        "powershell.onprem.script: must not contain quotes, shell operators",
        "routes.move_user: graph: Graph has no API for it",
        "routes.get_number: manual: a read cannot be a manual task",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!lab.state.join("engine").exists(), "nothing was created");
}
