//! The daemon's status page, its cookie sign-in, `/metrics` and JSON logs; the
//! page is rendered by a real headless Chromium (installed by
//! tests/browser/install-chromium.sh when missing).
#![allow(clippy::disallowed_methods)] // drives real processes on real time

#[path = "browser/chromium.rs"]
mod chromium;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chromium::{chromium, run_chromium};
use common::*;
use serde_json::Value;

/// A raw HTTP answer.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request on loopback with extra header lines.
fn request(addr: &str, method: &str, path: &str, headers: &[String], body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A daemon over a state directory holding two runs: one waiting at its approval
/// gate with one subject cancelled, one whose subjects all failed. Out of
/// service (written by hand): two of the failed run's subjects (stopped) and one
/// of the gated run's; the third failed subject had an outage that ended.
struct Fixture {
    tmp: tempfile::TempDir,
    daemon: Option<Child>,
    log: PathBuf,
    addr: String,
    token: String,
    gated: String,
    failed: String,
}

/// Put the instances `(idx, minutes ago at the run's clock)` of `run` out of
/// service, and give instance `ended` a 14-minute outage that is over.
fn mark_down(state: &Path, run: &str, down: &[(usize, i64)], ended: Option<usize>) {
    use portflow::clock::{Clock, Timestamp};
    use portflow::engine::instance::{OpenOutage, OutageSpan};
    edit_run(state, run, |record, insts| {
        let now = record
            .clock
            .map_or_else(|| portflow::clock::SystemClock.now(), |c| c.now());
        for &(idx, ago) in down {
            insts[idx].down = Some(OpenOutage {
                since: Timestamp(now.0 - ago * 60_000),
                step: "remove-dr-number".into(),
            });
        }
        if let Some(idx) = ended {
            insts[idx].outages = vec![OutageSpan {
                start: Timestamp(now.0 - 300 * 60_000),
                end: Timestamp(now.0 - 286 * 60_000),
                step: "remove-dr-number".into(),
                restored_by: "assign-oc-number".into(),
            }];
        }
    });
}

impl Fixture {
    fn start() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("state");

        let csv = tmp.path().join("gated.csv");
        export_subjects(&state, 41, 6, &csv);
        let rf = write_run_file(tmp.path(), "gated.yaml", &csv, 41, 6, 6000, "");
        let text = std::fs::read_to_string(&rf)
            .expect("rf")
            .replace("approvals: [operator-coordinated]\n", "");
        write(&rf, &text);
        let o = run(portflow(&state).arg("--json").arg("run").arg(&rf));
        assert_eq!(json(&o)["states"]["blocked"], 6, "{}", stdout(&o));
        let gated = json(&o)["run"].as_str().expect("id").to_string();
        let o = run(portflow(&state).args(["cancel", &gated, "--subject", "user0003@contoso.com"]));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        let csv = tmp.path().join("failing.csv");
        // Another state directory: `sim init` keeps an existing source tenant.
        export_subjects(&tmp.path().join("source"), 42, 3, &csv);
        let faults = "  faults: {transient_rate: 1.0}\n";
        let rf = write_run_file(tmp.path(), "failing.yaml", &csv, 42, 3, 6000, faults);
        let o = run(portflow(&state).arg("--json").arg("run").arg(&rf));
        assert_eq!(json(&o)["states"]["failed"], 3, "{}", stdout(&o));
        let failed = json(&o)["run"].as_str().expect("id").to_string();
        mark_down(&state, &failed, &[(0, 95), (1, 30)], Some(2));
        mark_down(&state, &gated, &[(1, 10)], None);
        // sled releases the store a moment after it is dropped.
        let o = pf(&state, &["status"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        let log = tmp.path().join("serve.log");
        let daemon = portflow(&state)
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .env("PORTFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn serve");
        let file = state.join("daemon.json");
        let t0 = Instant::now();
        while !file.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("daemon.json"))
                .expect("json");
        Fixture {
            tmp,
            daemon: Some(daemon),
            log,
            addr: doc["address"].as_str().expect("address").to_string(),
            token: doc["token"].as_str().expect("token").to_string(),
            gated,
            failed,
        }
    }

    fn get(&self, path: &str, auth: &[String]) -> Answer {
        request(&self.addr, "GET", path, auth, "")
    }

    fn bearer(&self) -> Vec<String> {
        vec![format!("Authorization: Bearer {}", self.token)]
    }

    fn cookie(&self) -> Vec<String> {
        vec![format!("Cookie: portflow_token={}", self.token)]
    }

    /// `GET /api/runs`, by run id.
    fn runs(&self) -> Vec<Value> {
        let a = self.get("/api/runs", &self.bearer());
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()["runs"].as_array().cloned().unwrap_or_default()
    }

    /// SIGTERM the daemon and return what it logged.
    fn stop(&mut self) -> String {
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: signalling our own child.
            assert_eq!(unsafe { libc::kill(d.id() as i32, libc::SIGTERM) }, 0);
            let t0 = Instant::now();
            while d.try_wait().ok().flatten().is_none() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "daemon did not stop"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

#[test]
fn sign_in_trades_the_token_for_a_strict_cookie_and_api_and_metrics_accept_it() {
    let mut fx = Fixture::start();

    // Without a cookie: the sign-in form, and no status data.
    let a = fx.get("/", &[]);
    assert_eq!(a.status, 401);
    assert!(a.body.contains("data-view=\"signin\""), "{}", a.body);
    assert!(a.body.contains("action=\"/login\""), "{}", a.body);
    let a = fx.get("/?token=not-the-token", &[]);
    assert_eq!(a.status, 401);
    assert!(a.body.contains("not the daemon&#39;s current token"));
    assert!(a.header("set-cookie").is_none());

    // The token in the address becomes a cookie, and the address loses it.
    let a = fx.get(&format!("/?token={}", fx.token), &[]);
    assert_eq!(a.status, 303, "{}", a.head);
    assert_eq!(a.header("location"), Some("/"));
    let cookie = a.header("set-cookie").expect("cookie").to_string();
    assert!(cookie.starts_with(&format!("portflow_token={};", fx.token)));
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");

    // The sign-in form does the same.
    let form = ["Content-Type: application/x-www-form-urlencoded".to_string()];
    let a = request(
        &fx.addr,
        "POST",
        "/login",
        &form,
        &format!("token={}", fx.token),
    );
    assert_eq!(a.status, 303, "{}", a.head);
    assert_eq!(a.header("set-cookie"), Some(cookie.as_str()));
    let a = request(&fx.addr, "POST", "/login", &form, "token=nope");
    assert_eq!(a.status, 401);
    assert!(a.header("set-cookie").is_none());

    // With the cookie: the page (without the token in it) and the API.
    let a = fx.get("/", &fx.cookie());
    assert_eq!(a.status, 200);
    assert!(a.body.contains("data-view=\"status\""));
    assert!(
        !a.body.contains(&fx.token),
        "the page never holds the token"
    );
    assert_eq!(fx.get("/api/runs", &fx.cookie()).status, 200);
    let mut cross = fx.cookie();
    cross.push("Sec-Fetch-Site: cross-site".into());
    assert_eq!(
        fx.get("/api/runs", &cross).status,
        401,
        "cookie from another site"
    );
    assert_eq!(fx.get("/api/runs", &[]).status, 401);

    // Attention: the failed run's subjects, with step and reason, limited.
    let a = fx.get("/api/attention?limit=2", &fx.cookie());
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(v["truncated"], true, "{v}");
    let list = v["instances"].as_array().expect("instances");
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["run"], fx.failed.as_str());
    assert_eq!(list[0]["state"], "failed");
    assert_eq!(list[0]["step"], "inspect");
    assert!(
        list[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Service is unavailable")),
        "{v}"
    );

    // Out of service: the stopped subjects first; the same cookie rules.
    let a = fx.get("/api/out-of-service", &fx.cookie());
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(v["stuck"], 2, "{v}");
    assert_eq!(v["runs"][&fx.failed], 2, "{v}");
    assert_eq!(v["runs"][&fx.gated], 1, "{v}");
    let list = v["instances"].as_array().expect("instances");
    assert_eq!(list[0]["run"], fx.failed.as_str(), "{v}");
    assert_eq!(list[0]["idx"], 0, "the longer of the two stopped ones: {v}");
    assert_eq!(list[0]["state"], "failed");
    assert_eq!(list[2]["run"], fx.gated.as_str(), "{v}");
    assert_eq!(list[2]["stuck"], false);
    assert_eq!(fx.get("/api/out-of-service", &cross).status, 401);
    assert_eq!(fx.get("/api/out-of-service", &[]).status, 401);

    // /metrics: bearer or cookie; instance gauges equal the API's counts.
    assert_eq!(fx.get("/metrics", &[]).status, 401);
    let m = fx.get("/metrics", &fx.bearer());
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{}",
        m.head
    );
    assert_eq!(fx.get("/metrics", &fx.cookie()).status, 200);
    for r in fx.runs() {
        let id = r["run"].as_str().expect("run id");
        for (state, n) in r["states"].as_object().expect("states") {
            let line = format!("portflow_instances{{run=\"{id}\",state=\"{state}\"}} {n}\n");
            assert!(m.body.contains(&line), "missing {line:?} in\n{}", m.body);
        }
    }
    for (run, n) in [(&fx.failed, 2), (&fx.gated, 1)] {
        let line = format!("portflow_out_of_service{{run=\"{run}\"}} {n}\n");
        assert!(m.body.contains(&line), "missing {line:?} in\n{}", m.body);
    }
    for name in [
        "# TYPE portflow_out_of_service gauge",
        "# TYPE portflow_outage_duration_seconds histogram",
        "portflow_outage_duration_seconds_bucket{le=\"1800\"} 1\n",
        "portflow_outage_duration_seconds_count 1\n",
        "# TYPE portflow_instances gauge",
        "# TYPE portflow_backend_calls_total counter",
        "# TYPE portflow_throttling_events_total counter",
        "# TYPE portflow_rate_limiter_waits_total counter",
        "# TYPE portflow_transition_commit_seconds histogram",
        "portflow_transition_commit_seconds_bucket{le=\"+Inf\"} ",
        "portflow_transition_commit_seconds_count ",
        "# TYPE portflow_commits_total counter",
        "# TYPE portflow_commit_groups_total counter",
    ] {
        assert!(m.body.contains(name), "missing {name:?} in\n{}", m.body);
    }

    // JSON logs: every line is an object, runs are reported, the token never is.
    let log = fx.stop();
    assert!(
        !log.contains(&fx.token),
        "the token is never logged:\n{log}"
    );
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |msg: &str, run: Option<&str>| {
        lines
            .iter()
            .any(|l| l["fields"]["message"] == msg && run.is_none_or(|r| l["fields"]["run"] == r))
    };
    assert!(said("portflow daemon listening", None), "{log}");
    assert!(said("driving run", Some(&fx.gated)), "{log}");
    assert!(
        said("run driver stopped; the run is resumable", Some(&fx.gated)),
        "{log}"
    );
    assert!(
        !said("driving run", Some(&fx.failed)),
        "a finished run is not driven"
    );
}

/// The opening tag of the element with `id`, and the markup up to its end tag.
fn element<'a>(dom: &'a str, id: &str) -> Option<(&'a str, &'a str)> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let close = tag_end + dom[tag_end..].find("</span>").unwrap_or(0);
    Some((&dom[start..=tag_end], &dom[tag_end + 1..close]))
}

#[test]
fn status_page_renders_the_api_counts_in_headless_chromium() {
    let Some(browser) = chromium() else {
        return;
    };
    let fx = Fixture::start();
    let runs = fx.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let out = fx.tmp.path().join("dom.html");
    let profile = fx.tmp.path().join("chromium-profile");
    // The token is traded for a cookie by the redirect inside this one visit.
    let url = format!("http://{}/?token={}", fx.addr, fx.token);
    run_chromium(
        &browser,
        &profile,
        &["--dump-dom".into(), url.clone()],
        &out,
    );
    let dom = std::fs::read_to_string(&out).expect("dom");
    assert!(
        dom.contains("data-view=\"status\""),
        "not signed in:\n{dom}"
    );
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the script did not render:\n{dom}"
    );
    assert!(!dom.contains(&fx.token), "the token is not in the page");

    for r in &runs {
        let id = r["run"].as_str().expect("run id");
        assert!(
            dom.contains(&format!("id=\"run-{id}\"")),
            "run {id}:\n{dom}"
        );
        let states = r["states"].as_object().expect("states");
        assert!(!states.is_empty());
        for (state, n) in states {
            let n = n.as_u64().expect("count");
            let (tag, inner) = element(&dom, &format!("count-{id}-{state}"))
                .unwrap_or_else(|| panic!("no count for {id} {state}:\n{dom}"));
            assert!(tag.contains(&format!("data-count=\"{n}\"")), "{tag}");
            assert!(inner.contains(&format!("<b>{n}</b>")), "{inner}");
        }
        assert_eq!(
            dom.matches(&format!("id=\"count-{id}-")).count(),
            states.len(),
            "exactly the API's states for {id}"
        );
    }
    let gated = runs
        .iter()
        .find(|r| r["run"] == fx.gated.as_str())
        .expect("gated run");
    assert_eq!(gated["states"]["blocked"], 5, "{gated}");
    assert_eq!(gated["states"]["cancelled"], 1, "{gated}");
    // Per-step counts: the gate step holds the blocked instances.
    assert!(
        dom.contains("data-step=\"operator-coordinated\" data-col=\"blocked\" data-count=\"5\""),
        "{dom}"
    );
    // Attention lists the failed run's three subjects; schedules answer 404 here.
    assert_eq!(
        dom.matches(&format!(
            "<tr data-run=\"{}\" data-subject=\"user",
            fx.failed
        ))
        .count(),
        3,
        "{dom}"
    );
    assert!(dom.contains("id=\"schedules-none\""), "{dom}");

    // Out of service: exactly the count the API returns, and one row per subject.
    let a = fx.get("/api/out-of-service?limit=100", &fx.bearer());
    assert_eq!(a.status, 200, "{}", a.body);
    let oos = a.json();
    let total = oos["total"].as_u64().expect("total");
    assert_eq!(total, 3, "{oos}");
    let (tag, inner) =
        element(&dom, "outages-count").unwrap_or_else(|| panic!("no out-of-service count:\n{dom}"));
    assert!(tag.contains(&format!("data-count=\"{total}\"")), "{tag}");
    assert_eq!(inner, total.to_string(), "{tag}{inner}");
    let table = dom
        .split_once("id=\"outages-table\"")
        .and_then(|(_, rest)| rest.split_once("</table>"))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("no out-of-service table:\n{dom}"));
    assert_eq!(table.matches("<tr ").count(), total as usize, "{table}");
    assert_eq!(table.matches("data-stuck=\"1\"").count(), 2, "{table}");
    // Stopped ones first, as the API lists them.
    let first = oos["instances"][0]["subject"].as_str().expect("subject");
    let first_row = table.find("<tr class=\"stuck\"").unwrap_or(usize::MAX);
    assert!(
        table[first_row..].starts_with(&format!(
            "<tr class=\"stuck\" data-run=\"{}\" data-subject=\"{first}\"",
            fx.failed
        )),
        "{table}"
    );
    assert!(!dom.contains("id=\"outages-none\""), "{dom}");
    // The runs say how many of theirs are down.
    let (tag, _) = element(&dom, &format!("down-{}", fx.failed)).expect("down tag");
    assert!(tag.contains("data-count=\"2\""), "{tag}");

    // A screenshot that shows the page, not a blank window.
    let shot = fx.tmp.path().join("status.png");
    run_chromium(
        &browser,
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".into(),
            url,
        ],
        &fx.tmp.path().join("screenshot.out"),
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!((info.width, info.height), (1280, 900));
    let channels = info.color_type.samples();
    assert!(channels >= 3 && info.bit_depth == png::BitDepth::Eight);
    let mut colours = std::collections::HashMap::<[u8; 3], usize>::new();
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        *colours.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
    }
    let pixels = (info.width * info.height) as usize;
    let background = colours.values().max().copied().unwrap_or(0);
    assert!(colours.len() >= 32, "only {} colours", colours.len());
    assert!(
        pixels - background > pixels / 10,
        "mostly one colour: {background} of {pixels}"
    );
    // The dark header bar (#1d2330) proves the style sheet applied.
    let header = colours.get(&[0x1d, 0x23, 0x30]).copied().unwrap_or(0);
    assert!(header > 1280 * 30, "header pixels: {header}");
}
