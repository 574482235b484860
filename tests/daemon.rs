//! The daemon: token-guarded local API, operator inputs routed to a running
//! driver, graceful stop on SIGTERM.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// `GET /metrics` as text.
fn metrics(addr: &str, token: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    let req = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string())
}

/// Sum of the samples of `name` whose labels contain every one of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|x| series.contains(x))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

#[test]
fn api_needs_the_token_routes_approvals_to_the_running_run_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 31, 4, &csv);
    let rf = write_run_file(tmp.path(), "g.yaml", &csv, 31, 4, 6000, "");
    let text = std::fs::read_to_string(&rf)
        .expect("rf")
        .replace("approvals: [operator-coordinated]\n", "");
    std::fs::write(&rf, text).expect("rf");
    let o = run(portflow(&state).arg("--json").arg("run").arg(&rf));
    assert_eq!(json(&o)["states"]["blocked"], 4, "{}", stdout(&o));
    let id = json(&o)["run"].as_str().expect("id").to_string();

    let mut daemon = portflow(&state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let file = state.join("daemon.json");
    let t0 = Instant::now();
    while !file.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("daemon.json")).expect("json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is private");
    }
    let addr = doc["address"].as_str().expect("address").to_string();
    let token = doc["token"].as_str().expect("token").to_string();

    assert_eq!(http(&addr, "GET", "/api/runs", None, "").0, 401, "no token");
    assert_eq!(
        http(&addr, "GET", "/api/runs", Some("wrong"), "").0,
        401,
        "wrong token"
    );
    let (code, runs) = http(&addr, "GET", "/api/runs", Some(&token), "");
    assert_eq!(code, 200);
    assert_eq!(runs["runs"][0]["run"], id.as_str());
    assert_eq!(runs["runs"][0]["states"]["blocked"], 4);
    let (code, page) = http(
        &addr,
        "GET",
        &format!("/api/runs/{id}/instances?state=blocked&limit=3"),
        Some(&token),
        "",
    );
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(
        page["instances"].as_array().map(Vec::len),
        Some(3),
        "{page}"
    );
    assert_eq!(page["instances"][0]["state"], "blocked");
    assert_eq!(
        http(&addr, "GET", &format!("/api/runs/{id}/instances"), None, "").0,
        401
    );

    // The CLI cannot open the store while the daemon holds it: status and resume
    // go through the API.
    let o = run(portflow(&state).arg("status"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(portflow(&state).arg("resume"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("the daemon drives every unfinished run") && stdout(&o).contains(&id),
        "{}",
        stdout(&o)
    );

    let (code, v) = http(
        &addr,
        "POST",
        &format!("/api/runs/{id}/approve"),
        Some(&token),
        r#"{"step": "operator-coordinated", "by": "ops-lead"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["changed"], 4);
    let t0 = Instant::now();
    loop {
        let (_, r) = http(&addr, "GET", &format!("/api/runs/{id}"), Some(&token), "");
        if r["states"]["succeeded"] == 4 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "run did not finish: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _) = http(
        &addr,
        "POST",
        &format!("/api/runs/{id}/approve"),
        Some(&token),
        "{}",
    );
    assert_eq!(code, 400, "nothing left to approve");

    // The daemon drove the run: /metrics counts its tenant calls and commits.
    let m = metrics(&addr, &token);
    assert!(
        m.contains(&format!(
            "portflow_instances{{run=\"{id}\",state=\"succeeded\"}} 4\n"
        )),
        "{m}"
    );
    let calls = "portflow_backend_calls_total";
    assert!(
        metric_sum(&m, calls, &["kind=\"action\"", "outcome=\"ok\""]) >= 4.0,
        "{m}"
    );
    assert!(metric_sum(&m, calls, &["kind=\"poll\""]) >= 1.0, "{m}");
    let commits = metric_sum(&m, "portflow_commits_total", &[]);
    let groups = metric_sum(&m, "portflow_commit_groups_total", &[]);
    assert!(groups >= 1.0 && groups <= commits, "{m}");
    let timed = metric_sum(&m, "portflow_transition_commit_seconds_count", &[]);
    assert!(timed >= 4.0 && timed <= commits, "{m}");
    assert_eq!(
        metric_sum(
            &m,
            "portflow_transition_commit_seconds_bucket",
            &["le=\"+Inf\""]
        ),
        timed
    );

    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = daemon.try_wait() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!file.exists(), "daemon.json removed on stop");
    let v = json(&run(portflow(&state).args(["--json", "status", &id])));
    assert_eq!(v["states"]["succeeded"], 4);
    assert!(v["finished_at"].is_i64(), "{v}");
}

#[test]
fn serve_refuses_a_network_address_without_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run(portflow(&tmp.path().join("state")).args(["serve", "--listen", "0.0.0.0:0"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
}

#[test]
fn cli_commands_go_through_the_daemon_with_the_same_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 33, 3, &csv);
    let rf = write_run_file(tmp.path(), "g.yaml", &csv, 33, 3, 6000, "");
    let text = std::fs::read_to_string(&rf)
        .expect("rf")
        .replace("approvals: [operator-coordinated]\n", "");
    std::fs::write(&rf, text).expect("rf");
    let o = run(portflow(&state).arg("--json").arg("run").arg(&rf));
    let id = json(&o)["run"].as_str().expect("id").to_string();
    // Output without the daemon.
    let local_status = stdout(&run(portflow(&state).args(["status", &id])));
    let local_show = stdout(&run(portflow(&state).args([
        "--json",
        "show",
        &id,
        "user0002@contoso.com",
    ])));

    let mut daemon = portflow(&state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let file = state.join("daemon.json");
    let t0 = Instant::now();
    while !file.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = run(portflow(&state).args(["status", &id]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        local_status,
        "status is the same through the daemon"
    );
    let o = run(portflow(&state).args(["--json", "show", &id, "user0002@contoso.com"]));
    assert_eq!(
        stdout(&o),
        local_show,
        "show is the same through the daemon"
    );
    let o = run(portflow(&state).args(["show", &id, "nobody@contoso.com"]));
    assert_eq!(o.status.code(), Some(2), "bad input stays exit 2");

    let o = run(portflow(&state).args(["approve", &id, "--step", "operator-coordinated"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("approved: 3 instance(s)"),
        "{}",
        stdout(&o)
    );
    let t0 = Instant::now();
    loop {
        let v = json(&run(portflow(&state).args(["--json", "status", &id])));
        if v["states"]["succeeded"] == 3 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let _ = daemon.wait();
}

#[test]
fn run_resume_and_plan_go_through_the_daemon_with_the_same_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let rf = locations_run_file(tmp.path());
    let rf = rf.to_str().expect("path");
    let d = start_daemon(&state, &[]);
    let o = pf(&state, &["run", rf]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "some locations are refused: {}",
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(out.starts_with("run "), "{out}");
    let id = out
        .split_whitespace()
        .nth(1)
        .map(|s| s.trim_end_matches(':').to_string())
        .expect("run id");
    let o = pf(&state, &["plan", rf]);
    assert!(
        stdout(&o).contains("plan for"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = pf(&state, &["resume", &id]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let log_online = pf(&state, &["sim", "log", "loc"]);
    assert_eq!(log_online.status.code(), Some(0), "{}", stderr(&log_online));
    assert_eq!(stop_daemon(d), Some(0));
    let log_offline = pf(&state, &["sim", "log", "loc"]);
    assert!(
        stdout(&log_offline).lines().count() > 50,
        "{}",
        stdout(&log_offline)
    );
    assert_eq!(
        stdout(&log_online),
        stdout(&log_offline),
        "sim log through the daemon"
    );
    // What the daemon-driven run printed at its end is what `status RUN` prints.
    let local = stdout(&pf(&state, &["status", &id]));
    assert!(
        out.ends_with(&local),
        "through the daemon:\n{out}\nlocally:\n{local}"
    );
}

#[test]
fn a_backup_taken_mid_wave_under_the_daemon_restores_and_completes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 5, 60, &csv);
    let rf = write_run_file(tmp.path(), "wave.yaml", &csv, 5, 60, 600, "");
    let d = start_daemon(&state, &[]);
    let mut watcher = spawn_pf(&state, &["run", rf.to_str().expect("path")]);
    let id = wait_for(30, "the run", || only_run_id(&state));
    std::thread::sleep(Duration::from_millis(1500));
    let dest = tmp.path().join("backup");
    let o = pf(&state, &["--json", "backup", dest.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = json(&o);
    assert!(doc["engine_keys"].as_u64().unwrap_or(0) > 60, "{doc}");
    // Taken mid-wave: the copy has unfinished instances.
    let (_, v) = pf_json(&dest, &["status", &id]);
    assert!(
        v["states"]["succeeded"].as_u64().unwrap_or(0) < 60,
        "the backup was taken mid-wave: {v}"
    );
    // A second backup into the same place is refused.
    let o = pf(&state, &["backup", dest.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(watcher.wait().expect("run watcher").code(), Some(0));
    assert_eq!(stop_daemon(d), Some(0));

    // The backup is a state directory: resume there and the wave completes right.
    let o = pf(&dest, &["resume", &id]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_dr_to_oc_done(&dest, &id, &dest.join("sim").join(&id), 60);
}
