//! The Microsoft backend end to end: `portflow run` with `backend: {kind:
//! microsoft}` against `portflow sim serve` (the simulated tenant speaking
//! Graph and Entra's token endpoint), with faults on and SIGKILLs of the run.
//! `doctor` and `plan` against the same server.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const TENANT_ID: &str = "2f1c0000-0000-4000-8000-000000000001";
const CLIENT_ID: &str = "9a3e0000-0000-4000-8000-000000000002";
const SEED: u64 = 11;
const USERS: u32 = 300;
const SCALE: u32 = 120;
/// The simulator's behaviour, shared by the served tenant and the plain run.
const SIM: &str = "latency: {min: 30s, typical_max: 10m, tail_rate: 0}\n    \
                   dirsync_interval: 10m\n    \
                   operator_upload_delay: {min: 15m, max: 90m}\n    \
                   operator: {address_modes: {operator_assigns: 1}}";

/// Write a serve config and start `sim serve` on a free loopback port.
fn serve(
    lab: &Lab,
    name: &str,
    state: &Path,
    users: u32,
    extra_app: &str,
    faults: &str,
) -> SimServer {
    let cfg = lab.path(&format!("{name}-serve.yaml"));
    write(
        &cfg,
        &format!(
            "tenant_id: {TENANT_ID}\n\
             sim:\n    seed: {SEED}\n    users: {users}\n    profile: direct_routing\n    {SIM}\n\
             time_scale: {SCALE}\n\
             app:\n  client_id: {CLIENT_ID}\n  certificate: {}\n{extra_app}\
             faults:\n{faults}",
            repo()
                .join("tests/fixtures/graph/test-app-cert.pem")
                .display()
        ),
    );
    start_sim_serve(state, name, &cfg)
}

/// A DR → OC run file on the Microsoft backend at `url`.
fn graph_run_file(lab: &Lab, name: &str, url: &str, csv: &Path, workflow: &str) -> PathBuf {
    let path = lab.path(name);
    write(
        &path,
        &format!(
            "workflow: {workflow}\n\
             label: graph wave\n\
             backend:\n  kind: microsoft\n  tenant_id: {TENANT_ID}\n  client_id: {CLIENT_ID}\n  \
             credential:\n    certificate: {}\n  \
             graph: {{base_url: '{url}', login_url: '{url}'}}\n\
             subjects: {{csv: {}}}\n\
             concurrency: 50\n\
             approvals: [operator-coordinated]\n\
             operator: {{name: Contoso Telecom, address_mode: operator_assigns}}\n\
             time_scale: {SCALE}\n",
            repo().join("tests/fixtures/graph/test-app.pem").display(),
            csv.display()
        ),
    );
    path
}

/// The seed's subjects as `user,number` rows (the operator sets addresses:
/// no location column), optionally only `keep`.
fn subjects_csv(lab: &Lab, name: &str, keep: Option<&[String]>) -> PathBuf {
    let all = lab.path("exported.csv");
    if !all.exists() {
        export_subjects(&lab.path("seed-state"), SEED, USERS, &all);
    }
    let text = std::fs::read_to_string(&all).expect("exported CSV");
    let mut out = String::from("user,number\n");
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 2 || keep.is_some_and(|k| !k.iter().any(|u| u == cols[0])) {
            continue;
        }
        out.push_str(&format!("{},{}\n", cols[0], cols[1]));
    }
    let path = lab.path(name);
    write(&path, &out);
    path
}

/// 300 seeded users, the ones whose line is on-premises blocked at `plan`
/// (their path needs PowerShell); the rest (≥ 200) moved through Graph with
/// 429s (with and without Retry-After), 503s, every token revoked mid-wave,
/// failed long-running operations and a server restart, while the run is
/// SIGKILLed three times.
/// Every subject ends as on the plain simulator; no credential is stored,
/// logged or printed.
#[test]
fn a_dr_to_oc_wave_through_graph_survives_faults_and_kills() {
    let lab = Lab::new();
    let server_state = lab.path("server");
    const FAULTS: &str = "  throttle_rate: 0.03\n  throttle_retry_after_share: 0.5\n  \
                          throttle_retry_after: 2s\n  unavailable_rate: 0.02\n  \
                          lro_failure_rate: 0.04\n";
    let server = serve(&lab, "contoso", &server_state, USERS, "", FAULTS);
    let mut printed: Vec<(String, Vec<u8>)> = Vec::new();

    // Plan: read-only, the on-premises lines blocked with the reason.
    let all = subjects_csv(&lab, "all.csv", None);
    let plan_file = graph_run_file(
        &lab,
        "plan.yaml",
        &server.url,
        &all,
        "direct-routing-to-operator-connect",
    );
    let o = pf(
        &lab.state,
        &["--json", "plan", &plan_file.to_string_lossy()],
    );
    printed.push(("plan".into(), [o.stdout.clone(), o.stderr.clone()].concat()));
    let doc = json(&o);
    let plans = doc["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), USERS as usize);
    let mut ready = Vec::new();
    let mut powershell = 0;
    for p in plans {
        let blockers: Vec<&str> = p["blockers"]
            .as_array()
            .expect("blockers")
            .iter()
            .filter_map(|b| b.as_str())
            .collect();
        let subject = p["subject"].as_str().expect("subject").to_string();
        if blockers.is_empty() {
            ready.push(subject);
        } else if blockers
            .iter()
            .any(|b| b.contains("needs the PowerShell backend"))
        {
            powershell += 1;
        } else {
            panic!("{subject} blocked for another reason: {blockers:?}");
        }
    }
    assert!(powershell > 0, "some lines are on-premises in this seed");
    assert!(ready.len() >= 200, "{} ready", ready.len());
    assert!(
        !lab.state.join("engine").exists(),
        "plan created nothing in the state directory"
    );

    // Doctor: runnable (the PowerShell step is conditional).
    let wave = subjects_csv(&lab, "wave.csv", Some(&ready));
    let checked = graph_run_file(
        &lab,
        "checked.yaml",
        &server.url,
        &wave,
        "direct-routing-to-operator-connect",
    );
    let o = pf(&lab.state, &["doctor", &checked.to_string_lossy()]);
    printed.push((
        "doctor".into(),
        [o.stdout.clone(), o.stderr.clone()].concat(),
    ));
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("conditional"), "{}", stdout(&o));

    // The server restarts (its tenant persists) with every token issued in
    // its first 30 virtual minutes refused from then on: mid-wave.
    assert_eq!(server.stop(), Some(0), "sim serve stops cleanly");
    let server = serve(
        &lab,
        "contoso",
        &server_state,
        USERS,
        "",
        &format!("{FAULTS}  expire_tokens_after: 30m\n"),
    );
    let run_file = graph_run_file(
        &lab,
        "wave.yaml",
        &server.url,
        &wave,
        "direct-routing-to-operator-connect",
    );

    // The wave, killed three times, then driven to its end.
    let mut rng = Rng(0x6a09_e667);
    let id = kill_and_resume(&lab.state, &run_file, 3, &mut rng, (2_500, 6_000));
    let o = run(portflow(&lab.state)
        .env("PORTFLOW_LOG", "portflow=debug")
        .args(["resume", &id]));
    printed.push((
        "resume".into(),
        [o.stdout.clone(), o.stderr.clone()].concat(),
    ));
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let o = pf(&lab.state, &["--json", "show", &id]);
    printed.push(("show".into(), o.stdout.clone()));
    assert_eq!(server.stop(), Some(0), "sim serve stops cleanly");

    // Every subject succeeded once; the tenant saw no non-idempotent action
    // twice and ends right for everyone.
    let tenant_dir = server_state.join("sim").join("contoso");
    assert_dr_to_oc_done(&lab.state, &id, &tenant_dir, ready.len());
    // The writes' client-request-ids are in the histories, for audit.
    let histories = instances_with_events(&lab.state, &id);
    let with_crid = histories
        .values()
        .filter(|(_, events)| {
            events.iter().any(|e| {
                matches!(&e.kind, portflow::engine::instance::EventKind::ActionSucceeded { output: Some(o), .. }
                    if o["client_request_id"].as_str().is_some_and(|c| c.len() == 36))
            })
        })
        .count();
    assert_eq!(
        with_crid,
        ready.len(),
        "every subject's writes carry a client-request-id"
    );

    // As on the plain simulator: the same subjects, the same seed.
    let plain = lab.path("plain");
    let plain_file = lab.path("plain.yaml");
    write(
        &plain_file,
        &format!(
            "workflow: direct-routing-to-operator-connect\n\
             backend:\n  kind: sim\n  seed: {SEED}\n  users: {USERS}\n  profile: direct_routing\n  {}\n\
             subjects: {{csv: {}}}\n\
             concurrency: 50\n\
             approvals: [operator-coordinated]\n\
             operator: {{name: Contoso Telecom, address_mode: operator_assigns}}\n\
             time_scale: 600\n",
            SIM.replace("\n    ", "\n  "),
            wave.display()
        ),
    );
    let o = run(portflow(&plain).arg("run").arg(&plain_file));
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let plain_id = only_run_id(&plain).expect("plain run");
    let plain_states: Vec<(String, String)> = instances_with_events(&plain, &plain_id)
        .into_iter()
        .map(|(s, (i, _))| (s, format!("{:?}", i.status)))
        .collect();
    let graph_states: Vec<(String, String)> = histories
        .into_iter()
        .map(|(s, (i, _))| (s, format!("{:?}", i.status)))
        .collect();
    assert_eq!(graph_states, plain_states);

    // No credential in the state directory, a backup, the logs or any output.
    let o = pf(
        &lab.state,
        &["backup", &lab.path("backup").to_string_lossy()],
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let mut files = Vec::new();
    files_under(&lab.state, &mut files);
    files_under(&lab.path("backup"), &mut files);
    assert!(!files.is_empty());
    for (p, bytes) in &files {
        assert_no_secret(&p.display().to_string(), bytes);
    }
    for (what, bytes) in &printed {
        assert_no_secret(what, bytes);
    }
}

/// `doctor` names the permission to grant, and says which operations need
/// the PowerShell backend; it exits 0 only when the workflow can run.
#[test]
fn doctor_names_missing_permissions_and_powershell_only_operations() {
    let lab = Lab::new();
    let server = serve(
        &lab,
        "fabrikam",
        &lab.path("server"),
        20,
        "  missing_permissions: [TeamsPolicyUserAssign.ReadWrite.All]\n",
        "  throttle_rate: 0\n",
    );
    let csv = subjects_csv(&lab, "few.csv", None);
    let file = graph_run_file(
        &lab,
        "dr.yaml",
        &server.url,
        &csv,
        "direct-routing-to-operator-connect",
    );
    let o = pf(&lab.state, &["doctor", &file.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("grant_voice_routing_policy")
                && l.contains("missing permission")
                && l.contains("TeamsPolicyUserAssign.ReadWrite.All")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("get_user") && l.contains("available")),
        "{text}"
    );
    assert!(!lab.state.exists(), "doctor writes nothing");

    // A workflow whose every path needs PowerShell.
    let onprem = lab.path("onprem.csv");
    write(&onprem, "user,number\nuser0001@contoso.com,+14255550100\n");
    let file = lab.path("onprem.yaml");
    write(
        &file,
        &format!(
            "workflow: onprem-to-online\n\
             backend:\n  kind: microsoft\n  tenant_id: {TENANT_ID}\n  client_id: {CLIENT_ID}\n  \
             credential:\n    certificate: {}\n  graph: {{base_url: '{u}', login_url: '{u}'}}\n\
             subjects: {{csv: {}}}\n",
            repo().join("tests/fixtures/graph/test-app.pem").display(),
            onprem.display(),
            u = server.url,
        ),
    );
    let o = pf(&lab.state, &["--json", "doctor", &file.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    let doc = json(&o);
    let needs: Vec<&str> = doc["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|c| c["status"] == "needs_backend")
        .filter_map(|c| c["op"].as_str())
        .collect();
    assert!(needs.contains(&"move_user"), "{doc}");
    assert_eq!(doc["runnable"], false);

    // A wrong certificate: the sign-in fails with Entra's reason, no secret.
    let other = lab.path("other.pem");
    let key =
        std::fs::read_to_string(repo().join("tests/fixtures/graph/test-app-key.pem")).expect("key");
    // The key with no certificate: refused before any request.
    write(&other, &key);
    let text = std::fs::read_to_string(&file).expect("run file").replace(
        &repo()
            .join("tests/fixtures/graph/test-app.pem")
            .display()
            .to_string(),
        &other.display().to_string(),
    );
    write(&file, &text);
    let o = pf(&lab.state, &["doctor", &file.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("no PEM CERTIFICATE"), "{}", stderr(&o));
    assert_no_secret("doctor output", &[o.stdout, o.stderr].concat());
    assert_eq!(server.stop(), Some(0));
}
