//! Issue 11, "Daemon and CLI security": tenant names, the files the API reads,
//! the token file, cookie writes, authentication before parsing, log injection.
//! Everything runs the real binary; daemons listen on 127.0.0.1 only.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// One raw HTTP/1.1 request with extra header lines; returns (status, body).
fn raw(addr: &str, method: &str, path: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// Names of the entries of `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A daemon driving a run of 4 subjects that all wait at the approval gate
/// `operator-coordinated`; returns the daemon and the run id.
fn daemon_with_blocked_run(tmp: &Path, state: &Path, cmd: Option<Command>) -> (Daemon, String) {
    let csv = tmp.join("subjects.csv");
    export_subjects(state, 31, 4, &csv);
    let rf = write_run_file(tmp, "g.yaml", &csv, 31, 4, 6000, "");
    let text = std::fs::read_to_string(&rf)
        .expect("run file")
        .replace("approvals: [operator-coordinated]\n", "");
    write(&rf, &text);
    let d = match cmd {
        Some(c) => spawn_daemon(state, c),
        None => start_daemon(state, &[]),
    };
    let body = serde_json::json!({"run_file": rf}).to_string();
    let (status, v) = http(&d.addr, "POST", "/api/runs", Some(&d.token), &body);
    assert_eq!(status, 200, "{v}");
    let id = v["run"].as_str().expect("run id").to_string();
    wait_for(60, "4 instances at the gate", || {
        let (_, r) = http(
            &d.addr,
            "GET",
            &format!("/api/runs/{id}"),
            Some(&d.token),
            "",
        );
        (r["states"]["blocked"] == 4).then_some(())
    });
    (d, id)
}

/// Start a prepared `portflow serve` command and wait for its daemon.json.
#[allow(clippy::zombie_processes)]
fn spawn_daemon(state: &Path, mut cmd: Command) -> Daemon {
    let child = cmd.spawn().expect("spawn serve");
    let file = state.join("daemon.json");
    let doc = wait_for(20, "daemon.json", || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|d| d["pid"].as_u64() == Some(u64::from(child.id())))
    });
    Daemon {
        addr: doc["address"].as_str().expect("address").to_string(),
        token: doc["token"].as_str().expect("token").to_string(),
        child,
    }
}

// ---------------------------------------------------------------------------
// Item 7: tenant names are names, not paths.

#[test]
fn tenant_names_are_checked_everywhere_and_reading_never_creates_a_tenant() {
    let lab = Lab::new();
    let state = &lab.state;

    // `sim init --name` refuses anything but a plain name.
    // (Absolute names point into the lab: before the fix they were created.)
    let abs_name = lab.path("abs").to_string_lossy().into_owned();
    for bad in [
        "../evil",
        "",
        abs_name.as_str(),
        "a/b",
        ".hidden",
        "a..b",
        "x\ny",
    ] {
        let o = pf(state, &["sim", "init", "--users", "2", "--name", bad]);
        assert_eq!(code(&o), Some(2), "sim init --name {bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));
    }
    assert!(!state.join("evil").exists(), "nothing escaped sim/");
    assert!(
        !lab.path("abs").exists(),
        "nothing escaped the state directory"
    );
    let o = pf(
        state,
        &["sim", "init", "--users", "2", "--name", "good-1.x_y"],
    );
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let before = entries(state);
    let sim_before = entries(&state.join("sim"));

    // `sim log` / `sim outages` with a path-like name: exit 2, nothing created.
    let elsewhere = lab.path("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let abs = elsewhere.to_string_lossy().into_owned();
    // (Not "/": before the fix that wrote a sled store into the root directory.)
    for bad in ["..", "", abs.as_str(), "good-1.x_y/..", "../state"] {
        for what in ["log", "outages"] {
            let o = pf(state, &["sim", what, bad]);
            assert_eq!(code(&o), Some(2), "sim {what} {bad:?}: {}", stderr(&o));
            assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
        }
    }
    assert_eq!(
        entries(&elsewhere),
        Vec::<String>::new(),
        "no store opened there"
    );
    assert_eq!(
        entries(state),
        before,
        "no store opened in the state directory"
    );
    assert_eq!(entries(&state.join("sim")), sim_before);

    // An unknown tenant: exit 2 with a hint, and no directory for it.
    for what in ["log", "outages"] {
        let o = pf(state, &["sim", what, "nosuch"]);
        assert_eq!(code(&o), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));
    }
    assert!(!state.join("sim/nosuch").exists());
    assert_eq!(entries(state), before, "not even an engine store");

    // The same on a state directory that does not exist yet.
    let fresh = lab.path("fresh-state");
    let o = pf(&fresh, &["sim", "log", "nosuch"]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert!(!fresh.exists(), "reading created {:?}", entries(&fresh));

    // A good tenant still reads.
    let o = pf(state, &["sim", "log", "good-1.x_y"]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));

    // A run file's backend.tenant: `file:line:col`, exit 2, for validate and plan.
    let rf = lab.path("bad-tenant.yaml");
    write(
        &rf,
        "workflow: assign-emergency-location\n\
         backend:\n  kind: sim\n  tenant: ../../outside\n\
         subjects: [{user: a@contoso.com, number: \"+14255550100\", location_id: loc-1}]\n",
    );
    let rfs = rf.to_string_lossy().into_owned();
    for cmd in ["validate", "plan"] {
        let o = pf(state, &[cmd, &rfs]);
        assert_eq!(code(&o), Some(2), "{cmd}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{rfs}:4:11: backend.tenant:")),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    assert!(!lab.path("outside").exists());
}

#[test]
fn the_daemon_checks_tenant_names_and_creates_no_tenant_when_reading() {
    let lab = Lab::new();
    let state = &lab.state;
    let o = pf(state, &["sim", "init", "--users", "2", "--name", "shared"]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let elsewhere = lab.path("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let abs: String = elsewhere
        .to_string_lossy()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let d = start_daemon(state, &[]);
    let before = entries(state);
    let sim_before = entries(&state.join("sim"));
    for what in ["sim-log", "sim-outages"] {
        for bad in ["..", "", abs.as_str(), "..%2F..", "nosuch"] {
            let (status, v) = http(
                &d.addr,
                "GET",
                &format!("/api/cli/{what}?tenant={bad}"),
                Some(&d.token),
                "",
            );
            assert_eq!(status, 400, "{what} {bad:?}: {v}");
        }
        let (status, v) = http(
            &d.addr,
            "GET",
            &format!("/api/cli/{what}?tenant=shared"),
            Some(&d.token),
            "",
        );
        assert_eq!(status, 200, "{v}");
    }
    // The CLI through the daemon says the same.
    let o = run(portflow(state).args(["sim", "log", ".."]));
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert_eq!(entries(state), before);
    assert_eq!(entries(&state.join("sim")), sim_before);
    assert_eq!(entries(&elsewhere), Vec::<String>::new());
    assert_eq!(stop_daemon(d), Some(0));
}

// ---------------------------------------------------------------------------
// Item 8: the API reads run files only, and never quotes other files.

#[test]
fn the_api_reads_only_run_files_and_never_echoes_other_files() {
    let lab = Lab::new();
    let state = &lab.state;
    const SECRET: &str = "hunter2-SECRET";
    // Files the daemon can read but the caller should not learn about.
    let scalar = lab.path("creds.yaml");
    write(&scalar, &format!("api_key:{SECRET}\nother:line\n"));
    let mapping = lab.path("config.yml");
    write(&mapping, &format!("db_password: {SECRET}\n"));
    let text = lab.path("notes.txt");
    write(&text, &format!("{SECRET}\n"));
    let csv = lab.path("secret.csv");
    write(&csv, &format!("{SECRET},db_password\n"));
    // Run files that point at them.
    let via_csv = lab.path("via-csv.yaml");
    write(
        &via_csv,
        &format!(
            "workflow: assign-emergency-location\nsubjects: {{csv: {}}}\n",
            csv.display()
        ),
    );
    let via_workflow = lab.path("via-workflow.yaml");
    write(
        &via_workflow,
        &format!(
            "workflow: {}\nsubjects: [{{user: a@contoso.com}}]\n",
            scalar.display()
        ),
    );
    // A real run file with a mistake: its own diagnostics are still shown.
    let broken = lab.path("broken.yaml");
    write(
        &broken,
        "workflow: assign-emergency-location\nconcurrency: 0\n\
         subjects: [{user: a@contoso.com, number: \"+14255550100\", location_id: loc-1}]\n",
    );
    let d = start_daemon(state, &[]);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let refused = [
        "/etc/passwd".to_string(),
        s(&scalar),
        s(&mapping),
        s(&text),
        s(&via_csv),
        s(&via_workflow),
        "relative.yaml".to_string(),
        s(&lab.path("missing.yaml")),
        s(&lab.path("")),
    ];
    for path in &refused {
        for route in ["/api/runs", "/api/cli/plan"] {
            let body = serde_json::json!({"run_file": path}).to_string();
            let (status, out) = raw(
                &d.addr,
                "POST",
                route,
                &[format!("Authorization: Bearer {}", d.token)],
                &body,
            );
            assert_eq!(status, 400, "{route} {path}: {out}");
            for leak in [SECRET, "root:", "db_password", "api_key", "other:line"] {
                assert!(!out.contains(leak), "{route} {path} leaks {leak:?}: {out}");
            }
        }
    }
    let body = serde_json::json!({"run_file": broken}).to_string();
    let (status, v) = http(&d.addr, "POST", "/api/cli/plan", Some(&d.token), &body);
    assert_eq!(status, 400, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "{}:2:14: concurrency must be between 1 and 1000",
            broken.display()
        )),
        "{v}"
    );

    // Schedules: the same rule for their run files.
    let sched = |run_file: &str| {
        serde_json::json!({"schedules": [{"name": "n", "cron": "0 22 * * *", "timezone": "UTC",
                                          "launch": {"run_file": run_file}}]})
        .to_string()
    };
    for path in ["/etc/passwd", "relative.yaml"] {
        let (status, v) = http(
            &d.addr,
            "POST",
            "/api/schedules",
            Some(&d.token),
            &sched(path),
        );
        assert_eq!(status, 400, "{path}: {v}");
    }
    assert_eq!(stop_daemon(d), Some(0));
}

#[test]
fn a_scheduled_fire_records_no_contents_of_a_file_that_is_not_a_run_file() {
    let lab = Lab::new();
    let state = &lab.state;
    let secret = lab.path("creds.yaml");
    write(&secret, "api_key:hunter2-SECRET\n");
    // Two seconds before 10:00 UTC on the rehearsal clock.
    let d = start_daemon(state, &["--clock-start", "2026-11-20T09:59:58Z"]);
    let body = serde_json::json!({"schedules": [{"name": "hourly", "cron": "0 * * * *",
        "timezone": "UTC", "launch": {"run_file": secret}}]})
    .to_string();
    let (status, v) = http(&d.addr, "POST", "/api/schedules", Some(&d.token), &body);
    assert_eq!(status, 200, "{v}");
    let history = wait_for(30, "the 10:00 fire", || {
        let (_, v) = http(&d.addr, "GET", "/api/schedules/hourly", Some(&d.token), "");
        let h = v["history"].as_array().cloned().unwrap_or_default();
        (!h.is_empty()).then_some(serde_json::Value::Array(h))
    });
    let text = history.to_string();
    assert!(text.contains("not a run file"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("api_key"),
        "{text}"
    );
    assert_eq!(stop_daemon(d), Some(0));
}

// ---------------------------------------------------------------------------
// Item 9: the token file.

#[cfg(unix)]
#[test]
fn the_token_file_is_private_and_no_link_is_followed() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let lab = Lab::new();
    let state = &lab.state;
    std::fs::create_dir_all(state).expect("state");
    let mode = |p: &Path| {
        std::fs::symlink_metadata(p)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    let check = |d: Daemon, what: &str| {
        let file = state.join("daemon.json");
        let meta = std::fs::symlink_metadata(&file).expect("daemon.json");
        assert!(
            meta.file_type().is_file(),
            "{what}: daemon.json is a plain file"
        );
        assert_eq!(mode(&file), 0o600, "{what}: daemon.json is private");
        assert!(
            std::fs::symlink_metadata(state.join("daemon.json.tmp")).is_err(),
            "{what}: no tmp left"
        );
        assert_eq!(stop_daemon(d), Some(0), "{what}");
    };

    // A stale tmp file, world-readable: the token must not inherit its mode.
    let tmp = state.join("daemon.json.tmp");
    write(&tmp, "stale");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    check(start_daemon(state, &[]), "stale 0644 tmp");

    // A symlinked tmp file: the token must not be written through it.
    let victim = lab.path("victim");
    write(&victim, "victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    symlink(&victim, &tmp).expect("symlink");
    check(start_daemon(state, &[]), "symlinked tmp");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "victim");
    assert_eq!(mode(&victim), 0o644);

    // A symlinked daemon.json: replaced, never written through.
    let victim2 = lab.path("victim2");
    write(&victim2, "victim2");
    symlink(&victim2, state.join("daemon.json")).expect("symlink");
    check(start_daemon(state, &[]), "symlinked daemon.json");
    assert_eq!(
        std::fs::read_to_string(&victim2).expect("victim2"),
        "victim2"
    );
    // A dangling one too (it would create the target).
    let dangling = lab.path("dangling");
    symlink(&dangling, state.join("daemon.json.tmp")).expect("symlink");
    check(start_daemon(state, &[]), "dangling tmp link");
    assert!(!dangling.exists(), "nothing created at the link's target");
}

// ---------------------------------------------------------------------------
// Item 10: writes authenticated by the page's cookie need a same-origin proof.

#[test]
fn cookie_writes_need_a_same_origin_proof_and_bearer_writes_do_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let (d, id) = daemon_with_blocked_run(tmp.path(), &state, None);
    let cookie = format!("Cookie: portflow_token={}", d.token);
    let subjects: Vec<String> = {
        let (_, v) = http(
            &d.addr,
            "GET",
            &format!("/api/runs/{id}/instances"),
            Some(&d.token),
            "",
        );
        v["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .filter_map(|i| i["subject"].as_str().map(str::to_string))
            .collect()
    };
    let cancel = |headers: &[String], subject: &str| {
        let body = serde_json::json!({"subject": subject}).to_string();
        raw(
            &d.addr,
            "POST",
            &format!("/api/runs/{id}/cancel"),
            headers,
            &body,
        )
    };
    let cancel_empty = |headers: &[String]| {
        raw(
            &d.addr,
            "POST",
            &format!("/api/runs/{id}/cancel"),
            headers,
            "",
        )
    };

    // No proof, with or without a body; a foreign or null Origin: 403.
    let (status, out) = cancel_empty(std::slice::from_ref(&cookie));
    assert_eq!(status, 403, "{out}");
    let (status, out) = cancel(std::slice::from_ref(&cookie), &subjects[0]);
    assert_eq!(status, 403, "{out}");
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let h = [cookie.clone(), format!("Origin: {origin}")];
        assert_eq!(cancel(&h, &subjects[0]).0, 403, "Origin {origin}");
    }
    let h = [cookie.clone(), "Sec-Fetch-Site: none".to_string()];
    assert_eq!(cancel(&h, &subjects[0]).0, 403, "typed-in address");
    for method in ["DELETE", "PUT", "PATCH"] {
        let (status, out) = raw(
            &d.addr,
            method,
            "/api/schedules/x",
            std::slice::from_ref(&cookie),
            "",
        );
        assert_eq!(status, 403, "{method}: {out}");
    }
    let (_, v) = http(
        &d.addr,
        "GET",
        &format!("/api/runs/{id}"),
        Some(&d.token),
        "",
    );
    assert_eq!(v["states"]["blocked"], 4, "nothing was cancelled: {v}");

    // Reads with the cookie need no proof.
    let (status, _) = raw(
        &d.addr,
        "GET",
        "/api/runs",
        std::slice::from_ref(&cookie),
        "",
    );
    assert_eq!(status, 200);

    // The page's own requests carry the proof.
    let h = [cookie.clone(), "Sec-Fetch-Site: same-origin".to_string()];
    let (status, out) = cancel(&h, &subjects[0]);
    assert_eq!(status, 200, "{out}");
    let h = [cookie.clone(), format!("Origin: http://{}", d.addr)];
    let (status, out) = cancel(&h, &subjects[1]);
    assert_eq!(status, 200, "{out}");
    // The CLI's bearer token needs none.
    let h = [format!("Authorization: Bearer {}", d.token)];
    let (status, out) = cancel(&h, &subjects[2]);
    assert_eq!(status, 200, "{out}");
    let (_, v) = http(
        &d.addr,
        "GET",
        &format!("/api/runs/{id}"),
        Some(&d.token),
        "",
    );
    assert_eq!(v["states"]["cancelled"], 3, "{v}");
    assert_eq!(stop_daemon(d), Some(0));
}

// ---------------------------------------------------------------------------
// Item 11: the token is checked before any body is read; logs cannot be forged.

#[test]
fn unauthenticated_requests_learn_nothing_from_body_parsing() {
    let lab = Lab::new();
    let d = start_daemon(&lab.state, &[]);
    let routes = [
        ("POST", "/api/runs"),
        ("POST", "/api/cli/plan"),
        ("POST", "/api/backup"),
        ("POST", "/api/schedules"),
        ("POST", "/api/runs/r1/approve"),
        ("POST", "/api/runs/r1/continue"),
        ("POST", "/api/schedules/n/pause"),
        ("DELETE", "/api/schedules/n"),
        ("GET", "/api/runs/r1/instances?limit=notanumber"),
        ("GET", "/api/cli/status?json=maybe"),
        ("GET", "/api/attention?limit=-1"),
        ("GET", "/metrics"),
    ];
    for (method, path) in routes {
        for body in [r#"{"bogus_field": 1}"#, "{not json", ""] {
            for auth in [vec![], vec!["Authorization: Bearer wrong".to_string()]] {
                let (status, out) = raw(&d.addr, method, path, &auth, body);
                assert_eq!(status, 401, "{method} {path} {body:?}: {out}");
                for leak in [
                    "bogus_field",
                    "unknown field",
                    "expected",
                    "run_file",
                    "dest",
                    "schedules",
                    "deserialize",
                    "limit",
                ] {
                    assert!(!out.contains(leak), "{method} {path} leaks {leak:?}: {out}");
                }
            }
        }
    }
    assert_eq!(stop_daemon(d), Some(0));
}

#[test]
fn request_data_cannot_forge_log_lines_in_text_or_json_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let log = tmp.path().join("daemon.log");
    let forged =
        "ops\n2030-01-01T00:00:00.000000Z  INFO portflow: FORGED line\r\x1b[31mred\u{85}\u{2028}x";
    let serve = |format: &str| {
        let mut c = portflow(&state);
        c.args(["--log-format", format, "serve", "--listen", "127.0.0.1:0"])
            .env("PORTFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        c
    };
    let (d, id) = daemon_with_blocked_run(tmp.path(), &state, Some(serve("text")));
    let poke = |d: &Daemon| {
        // Inputs that change nothing still log who sent them.
        for verb in ["approve", "continue", "retry"] {
            let body = if verb == "approve" {
                serde_json::json!({"step": "no-such-gate", "by": forged}).to_string()
            } else {
                serde_json::json!({"by": forged}).to_string()
            };
            let (status, v) = http(
                &d.addr,
                "POST",
                &format!("/api/runs/{id}/{verb}"),
                Some(&d.token),
                &body,
            );
            assert!(status == 200 || status == 400, "{verb}: {status} {v}");
        }
        let body =
            serde_json::json!({"subject": "nobody@contoso.com", "reason": forged}).to_string();
        http(
            &d.addr,
            "POST",
            &format!("/api/runs/{id}/cancel"),
            Some(&d.token),
            &body,
        );
    };
    poke(&d);
    assert_eq!(stop_daemon(d), Some(0));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("operator input through the API"), "{text}");
    assert!(
        text.contains("FORGED"),
        "the value is logged, escaped: {text}"
    );
    for line in text.lines() {
        assert!(
            !line.contains("2030-01-01") || line.contains("ops\\n2030"),
            "forged line: {line:?}"
        );
        assert!(
            !line.contains('\r') && !line.contains('\x1b'),
            "control bytes: {line:?}"
        );
        assert!(
            !line.contains('\u{85}') && !line.contains('\u{2028}'),
            "line separators: {line:?}"
        );
    }

    // JSON lines stay valid JSON, one object per line, the value intact.
    let d = spawn_daemon(&state, serve("json"));
    poke(&d);
    assert_eq!(stop_daemon(d), Some(0));
    let text = std::fs::read_to_string(&log).expect("log");
    let mut seen = false;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        if v["fields"]["message"] == "operator input through the API" {
            seen = true;
            assert!(
                v["fields"]["by"]
                    .as_str()
                    .is_some_and(|b| b.contains("FORGED")),
                "{v}"
            );
        }
    }
    assert!(seen, "{text}");
}
