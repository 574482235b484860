//! Schedules end to end: bad input, CLI-through-daemon equivalence, catch-up after
//! a 3-day outage on a rehearsal clock, and a SIGKILLed daemon in the middle of a
//! scheduled wave.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use std::path::Path;

use common::*;

#[test]
fn bad_schedules_are_reported_at_file_line_col_with_exit_2_and_store_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    locations_run_file(tmp.path());
    let cases = [
        // (cron, timezone, expected position, expected words)
        (
            "0 25 * * MON-FRI",
            "Europe/Berlin",
            "bad.yaml:3:14:",
            "hour",
        ),
        (
            "0 0 22 * * MON-FRI",
            "Europe/Berlin",
            "bad.yaml:3:",
            "5 fields",
        ),
        (
            "0 22 * * MON-FRY",
            "Europe/Berlin",
            "bad.yaml:3:",
            "day of week",
        ),
        ("0 22 * * *", "Europe/Berlinn", "bad.yaml:4:", "IANA"),
    ];
    for (cron, tz, at, words) in cases {
        let file = tmp.path().join("bad.yaml");
        write(
            &file,
            &format!(
                "schedules:\n  - name: nightly\n    cron: \"{cron}\"\n    timezone: {tz}\n    launch: {{run_file: locations.yaml}}\n"
            ),
        );
        let o = pf(&state, &["schedule", "add", file.to_str().expect("path")]);
        assert_eq!(o.status.code(), Some(2), "{cron} / {tz}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(at) && err.contains(words),
            "{cron} / {tz}: want {at} … {words}, got {err}"
        );
    }
    // A run file that does not load is caught when the schedule is added, not at 22:00.
    let file = tmp.path().join("missing.yaml");
    write(
        &file,
        "name: nightly\ncron: \"0 22 * * *\"\ntimezone: UTC\nlaunch:\n  run_file: nowhere.yaml\n",
    );
    let o = pf(&state, &["schedule", "add", file.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("missing.yaml:5:13:") && stderr(&o).contains("does not load"),
        "{}",
        stderr(&o)
    );
    let (code, v) = pf_json(&state, &["schedule", "list"]);
    assert_eq!(code, 0);
    assert_eq!(v["schedules"].as_array().map(Vec::len), Some(0));
}

#[test]
fn schedule_commands_print_the_same_with_and_without_the_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    locations_run_file(tmp.path());
    let file = tmp.path().join("yearly.yaml");
    // Fires once a year: the next 5 fire times stay put while the test runs.
    write(
        &file,
        "schedules:\n  - name: yearly\n    cron: \"0 3 1 1 *\"\n    timezone: America/New_York\n    overlap: queue\n    catch_up: {policy: all, max_age: 2h}\n    launch: {next_wave: {run_file: locations.yaml, size: 10}}\n",
    );
    let o = pf(&state, &["schedule", "add", file.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let views = |state: &Path| -> Vec<(Option<i32>, String)> {
        [
            vec!["schedule", "list"],
            vec!["schedule", "show", "yearly"],
            vec!["--json", "schedule", "show", "yearly"],
            vec!["schedule", "show", "nope"],
        ]
        .iter()
        .map(|args| {
            let o = pf(state, args);
            (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
        })
        .collect()
    };
    let offline = views(&state);
    assert_eq!(offline[3].0, Some(2), "an unknown schedule is bad input");
    let show = &offline[1].1;
    assert!(
        show.contains("2027-01-01T08:00:00.000Z") && show.contains("2031-01-01T08:00:00.000Z"),
        "5 next fire times, 03:00 New York = 08:00Z in winter: {show}"
    );

    let daemon = start_daemon(&state, &[]);
    let online = views(&state);
    assert_eq!(offline, online, "same output through the daemon");

    // Pause and resume through the daemon; a paused schedule has no next fire.
    let o = pf(&state, &["schedule", "pause", "yearly"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_, v) = pf_json(&state, &["schedule", "show", "yearly"]);
    assert_eq!(v["paused"], true);
    assert_eq!(v["next_fires"].as_array().map(Vec::len), Some(0));
    let o = pf(&state, &["schedule", "resume", "yearly"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_, v) = pf_json(&state, &["schedule", "show", "yearly"]);
    assert_eq!(v["next_fires"].as_array().map(Vec::len), Some(5));
    // Adding it again is refused unless --replace.
    let o = pf(&state, &["schedule", "add", file.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--replace"), "{}", stderr(&o));
    let o = pf(&state, &["schedule", "rm", "yearly"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stop_daemon(daemon), Some(0));
    let (_, v) = pf_json(&state, &["schedule", "list"]);
    assert_eq!(v["schedules"].as_array().map(Vec::len), Some(0));
}

fn fires_started(state: &Path, name: &str) -> Vec<String> {
    let (code, v) = pf_json(state, &["schedule", "show", name]);
    if code != 0 {
        return Vec::new();
    }
    let mut out: Vec<String> = v["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["outcome"]["outcome"] == "started")
                .filter_map(|e| e["fire"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.reverse();
    out
}

fn finished_runs(state: &Path) -> Option<usize> {
    let (code, v) = pf_json(state, &["status"]);
    (code == 0).then(|| {
        v.as_array()
            .or_else(|| v["runs"].as_array())
            .map(|r| r.iter().filter(|r| !r["finished_at"].is_null()).count())
            .unwrap_or(0)
    })
}

#[test]
fn catch_up_once_after_a_three_day_outage_runs_the_latest_missed_fire_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    locations_run_file(tmp.path());
    let file = tmp.path().join("hourly.yaml");
    write(
        &file,
        "name: hourly\ncron: \"0 * * * *\"\ntimezone: UTC\ncatch_up: {policy: once, max_age: 6h}\nlaunch: {run_file: locations.yaml}\n",
    );
    let sched = file.to_str().expect("path");
    // Friday, two seconds before 10:00 UTC.
    let d = start_daemon(
        &state,
        &[
            "--schedules",
            sched,
            "--clock-start",
            "2026-11-20T09:59:58Z",
        ],
    );
    wait_for(30, "the Friday fire", || {
        (finished_runs(&state) == Some(1)).then_some(())
    });
    assert_eq!(stop_daemon(d), Some(0));
    // Down all weekend; back on Monday at 10:30.
    let d = start_daemon(
        &state,
        &[
            "--schedules",
            sched,
            "--clock-start",
            "2026-11-23T10:30:00Z",
        ],
    );
    wait_for(30, "the catch-up fire", || {
        (finished_runs(&state) == Some(2)).then_some(())
    });
    // Nothing more fires before 11:00.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        fires_started(&state, "hourly"),
        ["2026-11-20T10:00:00.000Z", "2026-11-23T10:00:00.000Z"]
    );
    assert_eq!(stop_daemon(d), Some(0));
    let (_, v) = pf_json(&state, &["schedule", "show", "hourly"]);
    let texts: Vec<&str> = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("71 fire time(s) missed")),
        "72 hourly fires were missed, one ran: {texts:?}"
    );
    assert_eq!(finished_runs(&state), Some(2));
}

#[test]
fn sigkill_of_the_daemon_mid_wave_loses_and_duplicates_nothing_and_waves_do_not_overlap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 11, 120, &csv);
    let run_file = write_run_file(
        tmp.path(),
        "waves.yaml",
        &csv,
        11,
        120,
        600,
        "  tenant: waves\n",
    );
    let file = tmp.path().join("nightly.yaml");
    write(
        &file,
        &format!(
            "name: nightly\ncron: \"0 22 * * *\"\ntimezone: UTC\nlaunch: {{next_wave: {{run_file: {}, size: 60}}}}\n",
            run_file.display()
        ),
    );
    let sched = file.to_str().expect("path");
    let night = |day: u32| format!("2026-11-{day}T21:59:58Z");
    let first_night = night(23);
    let args = ["--schedules", sched, "--clock-start", first_night.as_str()];

    let mut d = start_daemon(&state, &args);
    let run1 = wait_for(30, "the first wave", || only_run_id(&state));
    let mut rng = Rng(u64::from(std::process::id()));
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(rng.range(400, 1500)));
        kill_daemon(d);
        d = start_daemon(&state, &args);
    }
    wait_for(180, "the first wave to finish", || {
        (finished_runs(&state) == Some(1)).then_some(())
    });
    assert_eq!(stop_daemon(d), Some(0));
    assert_eq!(
        fires_started(&state, "nightly").len(),
        1,
        "one fire, one run"
    );
    let tenant = state.join("sim").join("waves");
    assert_dr_to_oc_done(&state, &run1, &tenant, 60);

    // The next night takes the other 60; the night after finds nothing left.
    let second = night(24);
    let d = start_daemon(&state, &["--clock-start", second.as_str()]);
    wait_for(180, "the second wave to finish", || {
        (finished_runs(&state) == Some(2)).then_some(())
    });
    assert_eq!(stop_daemon(d), Some(0));
    let third = night(25);
    let d = start_daemon(&state, &["--clock-start", third.as_str()]);
    wait_for(30, "the third fire", || {
        let (_, v) = pf_json(&state, &["schedule", "show", "nightly"]);
        (v["history"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("no subject left")))
        .then_some(())
    });
    assert_eq!(stop_daemon(d), Some(0));

    let (_, v) = pf_json(&state, &["schedule", "show", "nightly"]);
    let runs: Vec<String> = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0], run1);
    assert_dr_to_oc_done(&state, &runs[1], &tenant, 60);
    // The waves are disjoint and together cover the list, in file order.
    let subjects = |run: &str| -> Vec<String> {
        let store = portflow::store::sled_store::SledStore::open(&state.join("engine"))
            .expect("open store");
        portflow::store::records::list_instances(&store, run)
            .expect("instances")
            .into_iter()
            .map(|i| i.subject)
            .collect()
    };
    let (a, b) = (subjects(&runs[0]), subjects(&runs[1]));
    let listed: Vec<String> = std::fs::read_to_string(&csv)
        .expect("csv")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect();
    assert_eq!(a, listed[..60], "wave 1 is the first 60 of the list");
    assert_eq!(b, listed[60..], "wave 2 is the rest");
}
