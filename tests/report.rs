//! `portflow report`: a finished rehearsal on the simulated tenant with
//! refusals, an approval, a cancel and a retry, reported as JSON, CSV and HTML
//! and checked against `show --json` for every subject; one cause whose
//! messages differ only by values is one group; the HTML renders in headless
//! Chromium with the JSON's counts; the daemon serves the reports behind its
//! token, live runs included; `plan --format csv|html`; hostile inputs stay text.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

#[path = "browser/chromium.rs"]
mod chromium;
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use portflow::engine::instance::{Instance, Status};
use serde_json::Value;

/// The first `hostile` location ids: a formula and a script.
const FORMULA: &str = "=HYPERLINK(\"http://evil.example\")";
const SCRIPT: &str = "@SUM(1)<script>alert(1)</script>";

/// A run file over 10 seeded users: users 1–6 carry each other's numbers (the
/// check refuses them, each message with other numbers), 7 and 8 hostile
/// location ids (refused too), 9 and 10 are fine. No approvals: they wait at
/// the gate. `approvals` adds the run file's approval.
fn rehearsal(lab: &Lab, approvals: bool) -> String {
    let src = lab.path("seeded.csv");
    export_subjects(&lab.path("source"), 42, 10, &src);
    let text = std::fs::read_to_string(&src).expect("exported");
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let numbers: Vec<String> = rows[..6].iter().map(|r| r[1].clone()).collect();
    for (i, r) in rows[..6].iter_mut().enumerate() {
        r[1] = numbers[(i + 1) % 6].clone();
    }
    rows[6][2] = FORMULA.into();
    rows[7][2] = SCRIPT.into();
    let mut w = csv::Writer::from_path(lab.path("subjects.csv")).expect("csv");
    w.write_record(["user", "number", "location_id"])
        .expect("csv");
    for r in &rows {
        w.write_record(r).expect("csv");
    }
    w.flush().expect("csv");
    let extra = format!(
        "time_scale: 6000\nlabel: report wave\n{SIM_OPERATOR}{}",
        if approvals {
            "approvals: [operator-coordinated]\n"
        } else {
            ""
        }
    );
    lab.run_file(
        "run.yaml",
        "direct-routing-to-operator-connect",
        "  seed: 42\n  users: 10\n  latency: {min: 30s, typical_max: 10m, tail_rate: 0}\n",
        &lab.path("subjects.csv"),
        &extra,
    )
}

fn ok(o: &std::process::Output) {
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
}

/// Finish the rehearsal: user0010 cancelled by bob, the rest approved by
/// alice, user0001 retried by carol (and refused again).
fn finished_run(lab: &Lab) -> String {
    let rf = rehearsal(lab, false);
    let (_, v) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(v["states"]["blocked"], 10, "{v}");
    let run = v["run"].as_str().expect("run id").to_string();
    ok(&pf(
        &lab.state,
        &[
            "cancel",
            &run,
            "--subject",
            "user0010@contoso.com",
            "--by",
            "bob",
        ],
    ));
    ok(&pf(&lab.state, &["approve", &run, "--by", "alice"]));
    pf(&lab.state, &["resume", &run]);
    ok(&pf(
        &lab.state,
        &[
            "retry",
            &run,
            "--subject",
            "user0001@contoso.com",
            "--by",
            "carol",
        ],
    ));
    let o = pf(&lab.state, &["resume", &run]);
    assert_eq!(o.status.code(), Some(3), "failures: exit 3: {}", stderr(&o));
    run
}

/// What `show --json` says of a subject: its instance and its history.
fn show(state: &Path, run: &str, subject: &str) -> (Instance, Vec<Value>) {
    let (code, v) = pf_json(state, &["show", run, subject]);
    assert_eq!(code, 0, "{v}");
    let inst: Instance = serde_json::from_value(v["instance"].clone()).expect("an instance");
    (inst, v["events"].as_array().cloned().unwrap_or_default())
}

/// `(by, engine-clock instant)` of each event `kind` in a history.
fn who(events: &[Value], kind: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == kind && e["by"].is_string())
        .map(|e| {
            let at = portflow::clock::Timestamp(e["at"].as_i64().unwrap_or(0));
            (
                e["by"].as_str().unwrap_or_default().to_string(),
                at.rfc3339(),
            )
        })
        .collect()
}

#[test]
fn the_report_agrees_with_show_for_every_subject_and_renders_in_chromium() {
    let lab = Lab::new();
    let run = finished_run(&lab);
    let steps = step_ids(&lab.state, &run);

    let (code, rep) = pf_json(&lab.state, &["report", &run[..10]]);
    assert_eq!(code, 0, "{rep}");
    assert_eq!(rep["run"], run.as_str());
    assert_eq!(rep["live"], false);
    assert_eq!(rep["time_scale"], 6000.0);
    let o = pf(&lab.state, &["report", &run, "--format", "csv"]);
    ok(&o);
    let csv_text = stdout(&o);
    let mut rd = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = rd
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}: {header:?}"))
    };
    let csv_rows: BTreeMap<String, csv::StringRecord> = rd
        .records()
        .map(|r| r.expect("a CSV row"))
        .map(|r| (r[1].to_string(), r))
        .collect();
    let subjects = rep["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 10);
    assert_eq!(csv_rows.len(), 10);

    for s in subjects {
        let name = s["subject"].as_str().expect("subject");
        let (inst, events) = show(&lab.state, &run, name);
        let row = &csv_rows[name];
        assert_eq!(s["state"], inst.status.name(), "{name}");
        assert_eq!(&row[col("state")], inst.status.name(), "{name}");
        if let Some(i) = inst.status.step() {
            assert_eq!(s["step"], steps[i].as_str(), "{name}");
            assert_eq!(&row[col("step")], steps[i].as_str(), "{name}");
        }
        assert_eq!(s["calls"], inst.calls, "{name}");
        assert_eq!(&row[col("calls")], inst.calls.to_string(), "{name}");
        let message = match &inst.status {
            Status::Failed { error, .. } | Status::RolledBack { error, .. } => Some(error.clone()),
            Status::NeedsAttention { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        assert_eq!(s["message"].as_str(), message.as_deref(), "{name}");
        let csv_message = &row[col("message")];
        assert!(
            message.as_deref().unwrap_or_default().ends_with(
                csv_message
                    .strip_prefix('\'')
                    .unwrap_or(csv_message)
                    .trim_start_matches('\'')
            ),
            "{name}: {csv_message}"
        );
        if message
            .as_deref()
            .is_some_and(|m| m.starts_with("refused:"))
        {
            assert_eq!(s["error_class"], "refused", "{name}");
        }
        // Times: engine clock (virtual here) apart from real time.
        let first = portflow::clock::Timestamp(events[0]["at"].as_i64().unwrap_or(0));
        assert_eq!(s["start"]["virtual_utc"], first.rfc3339(), "{name}");
        assert_ne!(s["start"]["utc"], s["start"]["virtual_utc"], "{name}");
        if inst.is_terminal() {
            let last = events.last().and_then(|e| e["at"].as_i64()).unwrap_or(0);
            assert_eq!(
                s["end"]["virtual_utc"],
                portflow::clock::Timestamp(last).rfc3339(),
                "{name}"
            );
        }
        // Who did what, and when.
        for (kind, action) in [
            ("gate_approved", "approved"),
            ("signal_received", "signalled"),
            ("retried", "retried"),
            ("cancelled", "cancelled"),
        ] {
            let expected = who(&events, kind);
            let got: Vec<(String, String)> = s["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .filter(|a| a["action"] == action)
                .map(|a| {
                    (
                        a["by"].as_str().unwrap_or_default().to_string(),
                        a["at"]["virtual_utc"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{name}: {action}");
            let cell = &row[col(action)];
            assert_eq!(
                cell.matches(" at ").count(),
                expected.len(),
                "{name}: {action}: {cell}"
            );
            for (by, _) in &expected {
                assert!(cell.contains(by.as_str()), "{name}: {cell}");
            }
        }
    }
    let by = |s: &str| {
        subjects
            .iter()
            .find(|x| x["subject"] == s)
            .unwrap_or_else(|| panic!("no {s}"))
    };
    assert_eq!(by("user0010@contoso.com")["state"], "cancelled");
    assert_eq!(by("user0009@contoso.com")["state"], "succeeded");
    assert_eq!(
        by("user0001@contoso.com")["actions"][1]["action"],
        "retried"
    );
    assert!(by("user0009@contoso.com")["out_of_service_s"].as_f64() > Some(0.0));

    // One cause, six messages differing by values: one group of six, in the
    // report and in the run's summary (`status`) alike.
    let groups = rep["summary"]["groups"].as_array().expect("groups");
    assert_eq!(groups[0]["count"], 6, "{groups:#?}");
    assert_eq!(
        groups[0]["cause"],
        "refused: <user> has the number <number>, not <number>"
    );
    assert_eq!(
        groups.len(),
        2,
        "and the two unknown locations: {groups:#?}"
    );
    let (_, status) = pf_json(&lab.state, &["status", &run]);
    let problems = status["problems"].as_array().expect("problems");
    let same: Vec<&Value> = problems
        .iter()
        .filter(|p| {
            p["problem"]
                .as_str()
                .unwrap_or_default()
                .contains("has the number")
        })
        .collect();
    assert_eq!(same.len(), 1, "{problems:#?}");
    assert_eq!(same[0]["count"], 6, "{problems:#?}");
    assert_eq!(rep["summary"]["states"]["failed"], 8);

    // Hostile inputs: text in a spreadsheet, text in the page.
    assert_eq!(
        &csv_rows["user0007@contoso.com"][col("location_id")],
        format!("'{FORMULA}")
    );
    assert_eq!(
        &csv_rows["user0008@contoso.com"][col("location_id")],
        format!("'{SCRIPT}")
    );
    assert!(csv_rows
        .values()
        .all(|r| r.iter().all(|c| !c.starts_with(['=', '+', '-', '@']))));

    let page = lab.path("report.html");
    let o = pf(
        &lab.state,
        &["report", &run, "--out", page.to_str().expect("utf-8")],
    );
    ok(&o);
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.starts_with("<!DOCTYPE html>"), "html by the extension");
    assert!(
        !html.contains("<script"),
        "no script, the hostile one included"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !html.contains("http-equiv") && !html.contains(" src="),
        "no external assets"
    );
    rendered_counts_match(&lab, &page, &rep);
}

/// Every `data-{attr}="K" data-count="N"` in `dom`, in order.
fn counts(dom: &str, attr: &str) -> Vec<(String, u64)> {
    let re =
        regex::Regex::new(&format!(r#"data-{attr}="([^"]*)" data-count="(\d+)""#)).expect("regex");
    re.captures_iter(dom)
        .map(|c| (c[1].to_string(), c[2].parse().unwrap_or(u64::MAX)))
        .collect()
}

/// The page rendered by Chromium shows the JSON report's counts; a
/// screenshot of it is not blank (and becomes docs/report.png when missing).
fn rendered_counts_match(lab: &Lab, page: &Path, rep: &Value) {
    let Some(browser) = chromium::chromium() else {
        return;
    };
    let profile = lab.path("chromium-profile");
    let url = format!("file://{}", page.display());
    let dom_file = lab.path("dom.html");
    chromium::run_chromium(
        &browser,
        &profile,
        &["--dump-dom".to_string(), url.clone()],
        &dom_file,
    );
    let dom = std::fs::read_to_string(&dom_file).expect("dom");
    let s = &rep["summary"];
    let states: Vec<(String, u64)> = s["states"]
        .as_object()
        .expect("states")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    let mut shown = counts(&dom, "state");
    shown.sort();
    assert_eq!(shown, states, "states");
    let funnel: Vec<(String, u64)> = s["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|f| {
            (
                f["step"].as_str().unwrap_or_default().to_string(),
                f["reached"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(counts(&dom, "step"), funnel, "funnel");
    let buckets: Vec<(String, u64)> = s["outages"]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b["bucket"].as_str().unwrap_or_default().to_string(),
                b["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(counts(&dom, "bucket"), buckets, "histogram");
    let re = regex::Regex::new(r#"<tr data-count="(\d+)">"#).expect("regex");
    let groups: Vec<u64> = re
        .captures_iter(&dom)
        .map(|c| c[1].parse().unwrap_or(0))
        .collect();
    let expected: Vec<u64> = s["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["count"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(groups, expected, "groups");
    assert!(!dom.contains("<script"), "the hostile input stayed text");

    let shot = lab.path("report.png");
    chromium::run_chromium(
        &browser,
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,900".into(),
            url,
        ],
        &lab.path("shot.out"),
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!((info.width, info.height), (1200, 900));
    let channels = info.color_type.samples();
    let mut histogram = BTreeMap::<[u8; 3], usize>::new();
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        *histogram.entry([px[0], px[1], px[2]]).or_default() += 1;
    }
    let total = (info.width * info.height) as usize;
    let white = histogram.get(&[255, 255, 255]).copied().unwrap_or(0);
    assert!(
        white < total * 9 / 10,
        "mostly blank: {white} of {total} white"
    );
    // The header bar (#1d2330) and the red of the stopped bar are drawn.
    assert!(histogram.get(&[0x1d, 0x23, 0x30]).copied().unwrap_or(0) > 1200 * 40);
    assert!(histogram.get(&[0xc6, 0x28, 0x28]).copied().unwrap_or(0) > 100);
    let docs = repo().join("docs/report.png");
    if !docs.exists() || std::env::var_os("PORTFLOW_UPDATE_DOCS").is_some() {
        std::fs::copy(&shot, &docs).expect("docs/report.png");
    }
}

/// One HTTP request to the daemon: status, head, body.
fn get(addr: &str, path: &str, auth: Option<String>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = auth.map_or(String::new(), |a| format!("{a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn the_daemon_serves_reports_behind_its_token_while_the_run_is_live() {
    let lab = Lab::new();
    let rf = rehearsal(&lab, false);
    let (_, v) = pf_json(&lab.state, &["run", &rf]);
    let run = v["run"].as_str().expect("run id").to_string();
    let mut daemon = portflow(&lab.state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let file = lab.state.join("daemon.json");
    let t0 = Instant::now();
    while !file.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("daemon.json")).expect("json");
    let addr = doc["address"].as_str().expect("address").to_string();
    let token = doc["token"].as_str().expect("token").to_string();
    let bearer = || Some(format!("Authorization: Bearer {token}"));

    for ext in ["csv", "json", "html"] {
        let path = format!("/runs/{run}/report.{ext}");
        let (code, _, body) = get(&addr, &path, None);
        assert_eq!(code, 401, "{path} without a token");
        assert!(!body.contains("user0001"), "{body}");
        let (code, head, body) = get(&addr, &path, bearer());
        assert_eq!(code, 200, "{path}: {body}");
        let content_type = match ext {
            "csv" => "content-type: text/csv; charset=utf-8",
            "json" => "content-type: application/json",
            _ => "content-type: text/html; charset=utf-8",
        };
        assert!(head.contains(content_type), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
            "{head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        if ext != "json" {
            assert!(
                head.contains(&format!(
                    "content-disposition: attachment; filename=\"portflow-{run}.{ext}\""
                )),
                "{head}"
            );
        }
        assert!(
            !body.contains(&token),
            "the token never appears in a report"
        );
    }
    let (_, _, body) = get(&addr, &format!("/runs/{run}/report.json"), bearer());
    let rep: Value = serde_json::from_str(&body).expect("a JSON report");
    assert_eq!(rep["live"], true, "the run waits at its gate");
    assert_eq!(
        rep["summary"]["states"]["blocked"], 10,
        "{}",
        rep["summary"]
    );
    let (code, _, body) = get(
        &addr,
        &format!("/runs/{run}/report.html"),
        Some(format!("Cookie: portflow_token={token}")),
    );
    assert_eq!(code, 200, "the status page's cookie works too");
    assert!(body.contains("id=\"live\""), "a live run is marked");
    let (code, _, _) = get(&addr, "/runs/nope/report.csv", bearer());
    assert_eq!(code, 404);

    // The CLI asks the daemon holding the store, with a prefix of the id.
    let out = lab.path("live.csv");
    let o = pf(
        &lab.state,
        &["report", &run[..12], "--out", out.to_str().expect("utf-8")],
    );
    ok(&o);
    let text = std::fs::read_to_string(&out).expect("written");
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.contains(",blocked,")),
        "{text}"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while daemon.try_wait().ok().flatten().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn plan_writes_the_preflight_as_csv_and_html() {
    let lab = Lab::new();
    let rf = rehearsal(&lab, true);
    let o = pf(&lab.state, &["plan", &rf, "--format", "csv"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "blocked subjects: exit 3: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let header = rd.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect("a column");
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 10);
    let blocked = rows
        .iter()
        .filter(|r| &r[col("status")] == "blocked")
        .count();
    assert_eq!(blocked, 8, "{text}");
    assert!(
        rows.iter()
            .any(|r| r[col("location_id")] == *format!("'{FORMULA}")),
        "{text}"
    );

    let page = lab.path("plan.html");
    let o = pf(
        &lab.state,
        &["plan", &rf, "--out", page.to_str().expect("utf-8")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).expect("written");
    assert!(
        html.contains("data-state=\"blocked\" data-count=\"8\""),
        "{html}"
    );
    assert!(
        html.contains("data-state=\"ready\" data-count=\"2\""),
        "{html}"
    );
    // The six swapped numbers are one cause.
    assert!(html.contains("<tr data-count=\"6\">"), "{html}");
    assert!(!html.contains("<script"), "{html}");

    let o = pf(&lab.state, &["--json", "plan", &rf, "--format", "html"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--json and --format html conflict"
    );
}
