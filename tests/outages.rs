//! `portflow outages` through the real binary, directly and through the daemon;
//! the `status` lines, the API and the metrics that show the same outages.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use common::*;
use portflow::clock::Timestamp;
use portflow::engine::instance::{OpenOutage, OutageSpan, Phase, Status};
use portflow::engine::run::Trip;
use serde_json::Value;

const MIN: i64 = 60_000;
/// The run's clock in these tests: 2030-01-01T00:00:00Z, standing still.
const T: i64 = 1_893_456_000_000;

/// A finished run of 3 subjects, rewritten so that at the run's clock (frozen at
/// `T`) subject 0 is waiting and down 90 min, subject 1 failed while down for
/// 72 min, subject 2 had a 14-minute outage; the breaker has tripped.
/// Returns the run id and the subjects by index.
fn outage_run(tmp: &Path, state: &Path) -> (String, Vec<String>) {
    let csv = tmp.join("subjects.csv");
    export_subjects(&tmp.join("source"), 61, 3, &csv);
    let faults = "  faults: {transient_rate: 1.0}\n";
    let rf = write_run_file(tmp, "w.yaml", &csv, 61, 3, 6000, faults);
    let o = run(portflow(state).arg("--json").arg("run").arg(&rf));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let id = json(&o)["run"].as_str().expect("run id").to_string();
    let mut subjects = Vec::new();
    let upload = step_index(&step_ids(state, &id), "wait-operator-upload");
    edit_run(state, &id, |record, insts| {
        record.clock = Some(frozen_clock(T));
        record.breaker.tripped = Some(Trip {
            at: Timestamp(T - 5 * MIN),
            failures: 3,
            threshold: 3,
        });
        let down = |ago: i64| {
            Some(OpenOutage {
                since: Timestamp(T - ago * MIN),
                step: "remove-dr-number".into(),
            })
        };
        insts[0].status = Status::Running {
            step: upload,
            phase: Phase::Waiting {
                started: Timestamp(T - 80 * MIN),
                deadline: Timestamp(T + 600 * MIN),
                next_poll: Timestamp(T + MIN),
                polls: 4,
                last_error: None,
                overdue_since: None,
            },
        };
        insts[0].down = down(90);
        insts[1].down = down(72);
        insts[2].status = Status::Succeeded;
        insts[2].outages = vec![OutageSpan {
            start: Timestamp(T - 300 * MIN),
            end: Timestamp(T - 286 * MIN),
            step: "remove-dr-number".into(),
            restored_by: "assign-oc-number".into(),
        }];
        subjects = insts.iter().map(|i| i.subject.clone()).collect();
    });
    (id, subjects)
}

/// The most subjects out of service at once, from the spans alone (open ones
/// last until `now`): what a reader of `outages --json` can compute.
fn peak_from_spans(doc: &Value) -> usize {
    let ms = |v: &Value| {
        Timestamp::parse_rfc3339(v.as_str().expect("an RFC 3339 instant"))
            .expect("RFC 3339")
            .0
    };
    let now = ms(&doc["now"]);
    let mut edges = Vec::new();
    for e in doc["ended"].as_array().expect("ended") {
        edges.push((ms(&e["start"]), 1i32));
        edges.push((ms(&e["end"]), -1));
    }
    for d in doc["down"].as_array().expect("down") {
        assert!(d.get("end").is_none(), "an open outage has no end: {d}");
        edges.push((ms(&d["start"]), 1));
        edges.push((now, -1));
    }
    edges.sort_unstable();
    let (mut at, mut best) = (0, 0);
    for (_, delta) in edges {
        at += delta;
        best = best.max(at);
    }
    usize::try_from(best).unwrap_or(0)
}

/// `GET path` with the bearer token; the status and the body.
fn get(addr: &str, token: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

#[test]
fn outages_lists_who_is_down_and_every_ended_outage_locally_and_through_the_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let (id, who) = outage_run(tmp.path(), &state);

    // Text: the summary line, the stopped subject first, then the ended outage.
    let o = pf(&state, &["outages", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "out of service now: 2 (longest 1h 30m, {}); ended: 1 (median 14m 0s, longest 14m 0s)\n",
            who[0]
        )),
        "{text}"
    );
    assert!(
        text.contains("at 2030-01-01 00:00:00 UTC (the run's clock)"),
        "{text}"
    );
    assert!(text.contains("at most 2 out of service at once"), "{text}");
    let row = |s: &str| text.lines().position(|l| l.starts_with(s));
    let (stopped, waiting, ended) = (row(&who[1]), row(&who[0]), row(&who[2]));
    assert!(
        stopped.is_some() && stopped < waiting && waiting < ended,
        "stopped, then longest, then ended:\n{text}"
    );
    let stopped_line = text.lines().find(|l| l.starts_with(&who[1])).unwrap_or("");
    assert!(stopped_line.contains("1h 12m"), "{stopped_line}");
    assert!(
        stopped_line.contains("STOPPED · failed at inspect"),
        "{stopped_line}"
    );
    let waiting_line = text.lines().find(|l| l.starts_with(&who[0])).unwrap_or("");
    assert!(
        waiting_line.contains("waiting at wait-operator-upload"),
        "{waiting_line}"
    );

    // JSON: the run's clock, RFC 3339 spans, durations, indexes; peak from the spans.
    let (code, doc) = pf_json(&state, &["outages", &id]);
    assert_eq!(code, 0);
    assert_eq!(doc["now"], "2030-01-01T00:00:00.000Z", "{doc}");
    let down = doc["down"].as_array().expect("down");
    assert_eq!(down.len(), 2, "{doc}");
    assert_eq!(down[0]["idx"], 1);
    assert_eq!(down[0]["subject"], who[1].as_str());
    assert_eq!(down[0]["state"], "failed");
    assert_eq!(down[0]["stuck"], true);
    assert_eq!(down[0]["duration_s"], 72.0 * 60.0);
    assert_eq!(down[0]["start"], "2029-12-31T22:48:00.000Z");
    assert_eq!(down[1]["idx"], 0);
    assert_eq!(down[1]["duration_s"], 90.0 * 60.0);
    assert_eq!(down[1]["step"], "remove-dr-number");
    let ended = doc["ended"].as_array().expect("ended");
    assert_eq!(ended.len(), 1, "{doc}");
    assert_eq!(ended[0]["idx"], 2);
    assert_eq!(ended[0]["start"], "2029-12-31T19:00:00.000Z");
    assert_eq!(ended[0]["end"], "2029-12-31T19:14:00.000Z");
    assert_eq!(ended[0]["duration_s"], 840.0);
    assert_eq!(ended[0]["restored_by"], "assign-oc-number");
    assert_eq!(peak_from_spans(&doc), 2);
    assert_eq!(doc["summary"]["peak"]["count"], 2, "{doc}");
    assert_eq!(doc["summary"]["ended_median_s"], 840.0);

    // CSV: a header and one row per outage, open ones first.
    let o = pf(&state, &["outages", &id, "--csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv_text = stdout(&o);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        [
            "kind",
            "idx",
            "subject",
            "start",
            "end",
            "duration_s",
            "step",
            "restored_by",
            "state"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 3, "{csv_text}");
    assert_eq!(&rows[0][0], "down");
    assert_eq!(&rows[0][2], who[1].as_str());
    assert_eq!(&rows[0][5], "4320.000");
    assert_eq!(&rows[0][4], "", "an open outage has no end");
    assert_eq!(&rows[2][0], "ended");
    assert_eq!(&rows[2][4], "2029-12-31T19:14:00.000Z");
    assert_eq!(&rows[2][7], "assign-oc-number");

    // Bad input: an unknown run, and two output forms at once.
    let o = pf(&state, &["outages", "no-such-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no run \"no-such-run\""),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("hint: "), "{}", stderr(&o));
    let o = pf(&state, &["--json", "outages", &id, "--csv"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // `status` says who is down and that the run is paused, with the way on.
    let o = pf(&state, &["status", &id]);
    let status_one = stdout(&o);
    assert!(
        status_one.contains(&format!(
            "out of service now: 2 (longest 1h 30m, {}), 1 of them stopped; who: portflow outages {id}\n",
            who[0]
        )),
        "{status_one}"
    );
    assert!(
        status_one.contains(
            "paused: 3 failure(s) reached the run's threshold of 3 (stop_after_failures)"
        ),
        "{status_one}"
    );
    assert!(
        status_one.contains(&format!("continue with: portflow resume --continue {id}")),
        "{status_one}"
    );
    let status_all = stdout(&pf(&state, &["status"]));
    assert!(
        status_all.contains(&format!("run {id}: out of service now: 2 (longest 1h 30m")),
        "{status_all}"
    );
    assert!(
        status_all.contains(&format!(
            "run {id}: paused after 3 failure(s) (threshold 3)"
        )),
        "{status_all}"
    );

    // Through the daemon: the same output, byte for byte (the run's clock stands still).
    let local_csv = csv_text;
    let local_json = stdout(&pf(&state, &["--json", "outages", &id]));
    let daemon = start_daemon(&state, &[]);
    for (args, local) in [
        (vec!["outages", id.as_str()], &text),
        (vec!["--json", "outages", id.as_str()], &local_json),
        (vec!["outages", id.as_str(), "--csv"], &local_csv),
        (vec!["status", id.as_str()], &status_one),
    ] {
        let o = run(portflow(&state).args(&args));
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(
            &stdout(&o),
            local,
            "{args:?} is the same through the daemon"
        );
    }
    let o = run(portflow(&state).args(["outages", "no-such-run"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint: "), "{}", stderr(&o));

    // The API route answers the `--json` document.
    let (code, body) = get(
        &daemon.addr,
        &daemon.token,
        &format!("/api/runs/{id}/outages"),
    );
    assert_eq!(code, 200, "{body}");
    let api: Value = serde_json::from_str(&body).expect("JSON");
    let cli: Value = serde_json::from_str(&local_json).expect("JSON");
    assert_eq!(api, cli);
    let (code, _) = get(&daemon.addr, &daemon.token, "/api/runs/no-such-run/outages");
    assert_eq!(code, 404);
    let (code, _) = get(
        &daemon.addr,
        "wrong-token",
        &format!("/api/runs/{id}/outages"),
    );
    assert_eq!(code, 401);

    // The status page's list: every run's down subjects, stopped first.
    let (code, body) = get(&daemon.addr, &daemon.token, "/api/out-of-service");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["stuck"], 1, "{v}");
    assert_eq!(v["runs"][&id], 2, "{v}");
    assert_eq!(v["instances"][0]["subject"], who[1].as_str(), "{v}");
    assert_eq!(v["instances"][0]["run"], id.as_str(), "{v}");
    assert_eq!(v["instances"][1]["duration_s"], 5400.0, "{v}");

    // Metrics: the gauge per run, the histogram of ended outages.
    let (code, m) = get(&daemon.addr, &daemon.token, "/metrics");
    assert_eq!(code, 200);
    for line in [
        format!("portflow_out_of_service{{run=\"{id}\"}} 2\n"),
        "portflow_outage_duration_seconds_bucket{le=\"600\"} 0\n".to_string(),
        "portflow_outage_duration_seconds_bucket{le=\"1800\"} 1\n".to_string(),
        "portflow_outage_duration_seconds_count 1\n".to_string(),
        "portflow_outage_duration_seconds_sum 840\n".to_string(),
    ] {
        assert!(m.contains(&line), "missing {line:?} in\n{m}");
    }
    assert_eq!(stop_daemon(daemon), Some(0));
}
