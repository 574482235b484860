//! Operating from the status page: Chromium, driven over the DevTools
//! protocol, really clicks approve, a manual task's "done" and cancel; the
//! runs move on as the API then says. Also the views the page reads
//! (worklist, grouped needs-attention, subject search) and the same-origin
//! rule for writes authenticated by the page's cookie.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

#[path = "browser/cdp.rs"]
mod cdp;
#[path = "browser/chromium.rs"]
mod chromium;
mod common;

use common::*;
use serde_json::{json, Value};

/// An approval gate, then a manual task (signal `done`): nothing calls the
/// backend, so a run blocks at once.
const WORKFLOW: &str = "name: page-ops-test\nversion: 1\nsubject: user\ninputs:\n  \
    user: {type: upn}\nsteps:\n  \
    - id: go-ahead\n    gate: {approval: the wave may start}\n  \
    - id: confirm\n    manual: {instructions: \"confirm ${inputs.user} by hand\"}\n";

const OPERATOR: &str = "Avery Operator";

fn u(i: u32) -> String {
    format!("u{i}@contoso.com")
}

/// A daemon over one run of six subjects: u1 and u6 at the gate, u2 at the
/// manual task (approved through the API), u3 and u4 failed for one cause
/// (their messages differ only in values), u5 failed for another.
struct Fixture {
    lab: Lab,
    daemon: Option<Daemon>,
    run: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            kill_daemon(d);
        }
    }
}

impl Fixture {
    fn start() -> Fixture {
        let lab = Lab::new();
        let wf = lab.path("wf.yaml");
        write(&wf, WORKFLOW);
        let csv = lab.path("subjects.csv");
        let rows: String = (1..=6).map(|i| format!("{}\n", u(i))).collect();
        write(&csv, &format!("user\n{rows}"));
        let rf = lab.path("run.yaml");
        write(
            &rf,
            &format!(
                "workflow: {}\nlabel: page wave\nbackend:\n  kind: sim\n  seed: 1\n  users: 5\n\
                 subjects: {{csv: {}}}\nconcurrency: 10\n\
                 window: {{cron: \"0 22 * * *\", duration: 6h, timezone: Europe/Berlin}}\n",
                wf.display(),
                csv.display()
            ),
        );
        let rf = rf.to_string_lossy().into_owned();
        let (code, doc) = pf_json(&lab.state, &["run", &rf]);
        assert_eq!(code, 3, "{doc}");
        assert_eq!(doc["states"]["blocked"], 6, "{doc}");
        let run = doc["run"].as_str().expect("run id").to_string();
        edit_run(&lab.state, &run, |_, insts| {
            use portflow::engine::instance::Status;
            let fail = |i: &mut portflow::engine::instance::Instance, error: String| {
                i.status = Status::Failed { step: 0, error };
            };
            fail(
                &mut insts[2],
                format!(
                    "User '{}' lacks a Teams Phone licence (request 7f3a9c2e1b4d8a01)",
                    u(3)
                ),
            );
            fail(
                &mut insts[3],
                format!(
                    "User '{}' lacks a Teams Phone licence (request 0c1d2e3f4a5b6c72)",
                    u(4)
                ),
            );
            fail(&mut insts[4], "Graph answered 403 Forbidden".into());
        });
        let daemon = start_daemon(&lab.state, &[]);
        let fx = Fixture {
            lab,
            daemon: Some(daemon),
            run,
        };
        let (st, v) = fx.post(
            "approve",
            &json!({"subject": u(2), "step": "go-ahead", "by": "setup"}),
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["changed"], 1, "{v}");
        wait_for(20, "u2 at the manual task", || {
            (fx.phase(&u(2)) == ("blocked".into(), Some(1))).then_some(())
        });
        fx
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon")
    }

    fn get(&self, path: &str) -> Value {
        let (st, v) = http(&self.d().addr, "GET", path, Some(&self.d().token), "");
        assert_eq!(st, 200, "{path}: {v}");
        v
    }

    fn post(&self, verb: &str, body: &Value) -> (u16, Value) {
        http(
            &self.d().addr,
            "POST",
            &format!("/api/runs/{}/{verb}", self.run),
            Some(&self.d().token),
            &body.to_string(),
        )
    }

    fn subject(&self, s: &str) -> Value {
        self.get(&format!("/api/runs/{}/subjects/{s}", self.run))
    }

    /// The subject's phase (or state) and step index.
    fn phase(&self, s: &str) -> (String, Option<u64>) {
        phase_and_step(&self.subject(s)["instance"]["status"])
    }

    /// The subject's events of `kind`.
    fn events(&self, s: &str, kind: &str) -> Vec<Value> {
        self.subject(s)["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

/// Click the button `selector` finds and wait until the page's answer line
/// is about `action` and says one instance changed.
fn press(b: &mut cdp::Browser, selector: &str, action: &str) {
    b.click(selector);
    let js = format!(
        "(() => {{ const t = document.getElementById('action-result').textContent; \
         return t.startsWith({action:?}) && t; }})()"
    );
    let said = b.wait_for(20, &js);
    assert!(
        said.as_str().is_some_and(|t| t.contains("1 changed")),
        "{action}: {said}"
    );
}

#[test]
fn the_views_group_work_and_problems_and_search_finds_subjects() {
    let fx = Fixture::start();
    let w = fx.get("/api/worklist");
    assert_eq!(w["total"], 3, "{w}");
    let groups = w["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{w}");
    assert_eq!(groups[0]["step"], "go-ahead");
    assert_eq!(groups[0]["kind"], "approval");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["text"], "the wave may start");
    assert_eq!(groups[0]["label"], "page wave");
    assert_eq!(groups[1]["step"], "confirm");
    assert_eq!(groups[1]["kind"], "manual");
    assert_eq!(groups[1]["signal"], "done");
    assert_eq!(groups[1]["count"], 1);
    assert!(
        groups[1]["subjects"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&u(2))),
        "the manual instructions name the subject: {w}"
    );
    let w = fx.get("/api/worklist?limit=1");
    assert_eq!(w["groups"][0]["subjects"].as_array().map(Vec::len), Some(1));
    assert_eq!(w["groups"][0]["truncated"], true, "{w}");

    let a = fx.get("/api/attention");
    assert_eq!(a["total"], 3, "{a}");
    let causes = a["groups"].as_array().expect("groups");
    assert_eq!(
        causes.len(),
        2,
        "one cause of two messages is one group: {a}"
    );
    assert_eq!(causes[0]["count"], 2);
    assert_eq!(
        causes[0]["cause"],
        "User '<user>' lacks a Teams Phone licence (request <id>)"
    );
    assert_eq!(causes[1]["count"], 1);
    assert_eq!(a["instances"][0]["cause"], causes[0]["cause"], "{a}");

    let s = fx.get("/api/subjects?q=U2@CONTOSO");
    assert_eq!(s["total"], 1, "{s}");
    assert_eq!(s["matches"][0]["subject"], u(2).as_str());
    assert_eq!(s["matches"][0]["run"], fx.run.as_str());
    assert_eq!(s["matches"][0]["state"], "blocked");
    let s = fx.get("/api/subjects?q=contoso&limit=4");
    assert_eq!(
        (s["total"].as_u64(), s["truncated"].as_bool()),
        (Some(6), Some(true))
    );
    let (st, v) = http(
        &fx.d().addr,
        "GET",
        "/api/subjects?q=%20",
        Some(&fx.d().token),
        "",
    );
    assert_eq!(st, 400, "{v}");
    // The run's porting window (no step of this workflow waits for it).
    let win = fx.get("/api/windows");
    let list = win["windows"].as_array().expect("windows");
    assert_eq!(list.len(), 1, "{win}");
    let w = &list[0];
    assert_eq!(w["run"], fx.run.as_str());
    assert_eq!(
        (&w["cron"], &w["duration"], &w["timezone"]),
        (&json!("0 22 * * *"), &json!("6h"), &json!("Europe/Berlin"))
    );
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(w[k].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{k}: {e}: {w}"))
    };
    let (opens, closes) = (at("opens"), at("closes"));
    assert!(closes > opens, "{w}");
    let open_for = (closes - opens).num_minutes();
    match w["open"].as_bool() {
        Some(true) => assert!(open_for <= 360, "{w}"),
        Some(false) => assert_eq!(open_for, 360, "{w}"),
        None => panic!("{w}"),
    }
}

#[test]
fn a_cookie_write_from_another_site_is_refused_403_and_changes_nothing() {
    let fx = Fixture::start();
    let d = fx.d();
    let path = format!("/api/runs/{}/approve", fx.run);
    let body = json!({"subject": u(1), "step": "go-ahead", "by": "forger"}).to_string();
    let send = |extra: &[&str]| {
        let mut s = std::net::TcpStream::connect(&d.addr).expect("connect");
        let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nCookie: portflow_token={}\r\n{extra}\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            d.addr,
            d.token,
            body.len()
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).expect("send");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).expect("read");
        out.split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0)
    };
    let evil = "Origin: http://evil.example";
    let other_port = format!("Origin: http://{}", d.addr.replace(':', ":1"));
    for headers in [
        vec![evil, "Sec-Fetch-Site: cross-site"],
        vec!["Sec-Fetch-Site: same-site", other_port.as_str()],
        vec![evil],
        vec![],
    ] {
        assert_eq!(send(&headers), 403, "{headers:?}");
    }
    assert_eq!(
        fx.phase(&u(1)),
        ("blocked".into(), Some(0)),
        "nothing changed"
    );
    assert!(fx.events(&u(1), "gate_approved").is_empty());
    // The page's own request passes.
    assert_eq!(send(&["Sec-Fetch-Site: same-origin"]), 200);
    wait_for(20, "u1 approved", || {
        (!fx.events(&u(1), "gate_approved").is_empty()).then_some(())
    });
}

#[test]
fn chromium_clicks_approve_done_and_cancel_and_the_run_moves_on() {
    let Some(browser) = chromium::chromium() else {
        return;
    };
    let fx = Fixture::start();
    let work = fx.get("/api/worklist");
    let attention = fx.get("/api/attention");
    let mut b = cdp::Browser::start(&browser, &fx.lab.path("profile"));
    b.prompt_text = OPERATOR.into();
    b.navigate(&format!("http://{}/?token={}", fx.d().addr, fx.d().token));
    b.wait_for(20, "document.body.dataset.loaded === '1'");
    assert_eq!(b.eval("document.body.dataset.view"), "status");
    assert_eq!(
        b.eval(&format!(
            "document.documentElement.outerHTML.includes({:?})",
            fx.d().token
        )),
        false,
        "the token is not in the page"
    );
    // Run times in the browser's zone, as the rest of the page (not ISO UTC).
    let meta = b.eval(&format!(
        "document.getElementById('run-{}')?.textContent ?? ''",
        fx.run
    ));
    let meta = meta.as_str().unwrap_or_default();
    let created = meta.split("created ").nth(1).unwrap_or_default();
    assert!(
        !created.is_empty() && !created.starts_with("20"),
        "created in the browser's format: {meta}"
    );

    // The worklist shows both groups with the API's counts.
    for g in work["groups"].as_array().expect("groups") {
        let id = format!(
            "work-count-{}-{}-{}",
            fx.run,
            g["step"].as_str().expect("step"),
            g["kind"].as_str().expect("kind")
        );
        let shown = b.eval(&format!("document.getElementById({id:?})?.dataset.count"));
        assert_eq!(shown, json!(g["count"].to_string()), "{id}");
    }
    assert_eq!(
        b.eval("document.querySelectorAll('details.work').length"),
        2
    );
    // Needs attention: one group per normalised cause, with the API's counts.
    let causes = attention["groups"].as_array().expect("groups");
    let shown = b.eval(
        "[...document.querySelectorAll('details.cause')].map(d => [d.querySelector('[data-cause]').textContent, Number(d.dataset.count)])",
    );
    let expected: Vec<Value> = causes
        .iter()
        .map(|g| json!([g["cause"], g["count"]]))
        .collect();
    assert_eq!(shown, json!(expected));
    assert_eq!(
        b.eval("document.querySelectorAll('details.cause tr[data-subject]').length"),
        3,
        "every failed subject is listed under its cause"
    );

    // A picture of the page as an operator sees it.
    let png = b.screenshot();
    let info = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .expect("a PNG")
        .info()
        .clone();
    assert_eq!(info.width, 1280);
    assert!(info.height >= 900, "{}", info.height);
    // The picture in docs/operations.md (refreshed with PORTFLOW_UPDATE_DOCS=1).
    let docs = repo().join("docs/status-page.png");
    if !docs.exists() || std::env::var_os("PORTFLOW_UPDATE_DOCS").is_some() {
        std::fs::write(&docs, &png).expect("docs/status-page.png");
    }

    // The window, shown in the browser's zone with UTC on hover.
    let title = b.eval(&format!(
        "document.querySelector(\"#windows-table tr[data-run='{}'] time\")?.title",
        fx.run
    ));
    assert!(
        title.as_str().is_some_and(|t| t.ends_with("Z (UTC)")),
        "{title}"
    );

    // Approve u1: the page asks the operator's name once.
    press(
        &mut b,
        &format!(
            "tr[data-kind='approval'][data-subject='{}'] button[data-verb='approve']",
            u(1)
        ),
        &format!("approve {}", u(1)),
    );
    assert_eq!(b.dialogs.len(), 1, "{:?}", b.dialogs);
    assert_eq!(b.dialogs[0].0, "prompt");

    // The manual task's "done" for u2 (the name is remembered).
    press(
        &mut b,
        &format!(
            "tr[data-kind='manual'][data-subject='{}'] button[data-verb='signal']",
            u(2)
        ),
        &format!("signal {}", u(2)),
    );
    assert_eq!(b.dialogs.len(), 1, "no second prompt: {:?}", b.dialogs);

    // Through the API: both moved on, recorded with the name the page sent.
    let approved = fx.events(&u(1), "gate_approved");
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["by"], OPERATOR);
    assert_eq!(approved[0]["step"], "go-ahead");
    let signalled = fx.events(&u(2), "signal_received");
    assert_eq!(signalled.len(), 1, "{signalled:?}");
    assert_eq!(signalled[0]["by"], OPERATOR);
    assert_eq!(signalled[0]["name"], "done");
    wait_for(20, "u1 at the manual task, u2 done", || {
        (fx.phase(&u(1)) == ("blocked".into(), Some(1)) && fx.phase(&u(2)).0 == "succeeded")
            .then_some(())
    });

    // Cancel asks first; the page refreshes to the new worklist.
    press(
        &mut b,
        &format!("tr[data-subject='{}'] button[data-verb='cancel']", u(6)),
        &format!("cancel {}", u(6)),
    );
    assert_eq!(b.dialogs.len(), 2, "{:?}", b.dialogs);
    assert_eq!(b.dialogs[1].0, "confirm");
    assert_eq!(fx.phase(&u(6)).0, "cancelled");
    let cancelled = fx.events(&u(6), "cancelled");
    assert_eq!(cancelled[0]["by"], OPERATOR, "{cancelled:?}");
    let now = fx.get("/api/worklist");
    assert_eq!(now["total"], 1, "only u1's manual task is left: {now}");
    b.wait_for(20, &format!(
        "document.querySelectorAll('details.work').length === 1 && document.getElementById('work-count-{}-confirm-manual')?.dataset.count === '1'",
        fx.run
    ));

    // Search finds u2 and shows its history, as the API has it.
    b.eval("document.getElementById('search-q').value = 'U2@'; document.getElementById('search-form').requestSubmit()");
    b.wait_for(
        20,
        &format!(
            "document.getElementById('history-subject')?.dataset.subject === '{}'",
            u(2)
        ),
    );
    let history = fx.subject(&u(2));
    let n = history["events"].as_array().map_or(0, Vec::len);
    assert!(n >= 3, "{history}");
    assert_eq!(
        b.eval("document.querySelectorAll('#history-table tbody tr').length"),
        n
    );
    assert_eq!(
        b.eval("document.getElementById('search-total').dataset.count"),
        "1"
    );
    assert_eq!(
        b.eval(&format!("!!document.querySelector(\"#history-table tr[data-event='signal_received'][data-by='{OPERATOR}']\")")),
        true
    );
    assert_eq!(
        b.eval("document.getElementById('history-subject').dataset.state"),
        "succeeded"
    );

    // Report links for the run, exactly where the daemon serves them.
    let links = b.eval(&format!(
        "[...document.querySelectorAll('#reports-{} a')].map(a => a.getAttribute('href'))",
        fx.run
    ));
    let expected: Vec<String> = ["html", "csv", "json"]
        .iter()
        .map(|f| format!("/runs/{}/report.{f}", fx.run))
        .collect();
    assert_eq!(links, json!(expected));
}
