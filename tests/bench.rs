//! Smoke tests of `portflow bench …` at tiny sizes: the JSON parses and the
//! figures are sane. Timings are printed by the benchmarks, never asserted here.

mod common;

use common::{json, portflow, run, stderr};
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(portflow(dir.path())
        .args(["--json", "bench"])
        .args(args)
        .args(["--quick", "--dir"])
        .arg(dir.path()));
    assert!(o.status.success(), "bench {args:?} failed: {}", stderr(&o));
    json(&o)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn transitions_reports_both_designs() {
    let v = bench(&["transitions"]);
    let waves = v["waves"].as_array().cloned().unwrap_or_default();
    assert_eq!(waves.len(), 2, "{v}");
    let (group, naive) = (&waves[0], &waves[1]);
    assert_eq!(group["design"], "group");
    assert_eq!(naive["design"], "naive");
    // 3 steps: start + 3 results = 4 durable transitions per instance.
    assert_eq!(group["transitions"], 200 * 4);
    assert_eq!(naive["transitions"], 20 * 4);
    assert!(num(&group["transitions_per_s"]) > 0.0);
    let group_syncs = num(&group["syncs_per_transition"]);
    assert!(group_syncs > 0.0 && group_syncs <= 1.0, "{group}");
    assert!(num(&naive["syncs_per_transition"]) >= 1.0, "{naive}");
    assert!(num(&group["payload_bytes_per_transition"]) > 0.0);
    assert!(num(&group["commit_p99_ms"]) >= num(&group["commit_p50_ms"]));
    assert!(num(&v["group_over_naive"]) > 0.0);
    assert!(v["machine"]["cores"].as_u64().is_some());
}

#[test]
fn makespan_is_never_below_its_lower_bound() {
    let v = bench(&["makespan"]);
    let f = &v["figures"];
    assert_eq!(f["subjects"], 100, "{v}");
    let finished: f64 = f["outcomes"]
        .as_object()
        .map(|o| o.values().map(num).sum())
        .unwrap_or(0.0);
    assert_eq!(finished, 100.0, "every subject ends: {v}");
    // The bound is a true lower bound: the ratio cannot drop below 1.
    assert!(num(&f["makespan_over_bound"]) >= 1.0, "{f}");
    assert!(num(&f["makespan_s"]) >= num(&f["bound_sync_s"]));
    let share = num(&f["calls_vs_fixed_30s_poll"]);
    assert!(share > 0.0 && share < 1.0, "{f}");
    assert_eq!(
        f["throttled"], 0,
        "the engine paces its calls under the limit"
    );
}

#[test]
fn scale_resumes_after_sigkill_and_reports_memory() {
    let v = bench(&["scale"]);
    let f = &v["figures"];
    assert_eq!(f["instances"], 300, "{v}");
    assert!(num(&f["state_bytes_on_disk"]) > 0.0);
    let k = &f["resume_after_sigkill"];
    assert!(num(&k["first_poll_s"]) > 0.0, "{k}");
    assert!(num(&k["all_overdue_polled_s"]) >= num(&k["first_poll_s"]));
    assert!(num(&k["peak_rss_bytes"]) >= num(&k["rss_bytes"]));
    assert!(num(&k["rss_bytes"]) > 0.0);
    let keys: f64 = f["live_records"]
        .as_array()
        .map(|a| a.iter().map(|r| num(&r["keys"])).sum())
        .unwrap_or(0.0);
    assert!(
        keys >= 300.0 * 3.0,
        "snapshot, subject and timer per instance: {f}"
    );
}

#[test]
fn growth_has_a_row_per_figure_and_a_column_per_size() {
    let v = bench(&["growth", "--skip", "scale"]);
    assert_eq!(v["sizes"], serde_json::json!([50, 200]));
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(2));
    assert!(v["runs"][1]["transitions"]["per_s"].as_f64().is_some());
    assert!(v["runs"][1]["makespan"]["makespan_over_bound"]
        .as_f64()
        .is_some());
    assert!(v["growth"]["backend calls per subject"].as_f64().is_some());
}

/// The keys `../shared/anchors-bench/common/summarize.py` and its readers use.
const ANCHOR_KEYS: [&str; 12] = [
    "engine",
    "variant",
    "n",
    "k",
    "wall_s",
    "instances_per_s",
    "steps_per_s",
    "start_s",
    "polls_total",
    "server_hwm_mb",
    "server_cpu_s",
    "disk_mb",
];

#[test]
fn anchor_runs_the_anchors_workload_and_prints_their_keys() {
    let v = bench(&["anchor"]);
    for key in ANCHOR_KEYS {
        assert!(!v[key].is_null(), "no {key}: {v}");
    }
    assert_eq!(v["engine"], "portflow");
    let (n, k) = (v["n"].as_u64().unwrap_or(0), v["k"].as_u64().unwrap_or(0));
    assert_eq!((n, k), (50, 2), "{v}");
    // 3 polls (done on the 3rd) and 1 action per step, every instance done.
    assert_eq!(v["polls_total"].as_u64(), Some(3 * k * n), "{v}");
    assert_eq!(v["actions_total"].as_u64(), Some(k * n), "{v}");
    assert_eq!(v["succeeded"].as_u64(), Some(n), "{v}");
    assert_eq!(v["failed"], 0);
    // 2 durable 100 ms sleeps per step, one after the other.
    assert!(num(&v["wall_s"]) >= 0.4, "{v}");
    assert!(num(&v["wall_s"]) >= num(&v["start_s"]));
    assert!(num(&v["server_hwm_mb"]) > 0.0 && num(&v["disk_mb"]) > 0.0);

    // Without --json: a table, then the same figures as one JSON line.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(portflow(dir.path())
        .args([
            "bench",
            "anchor",
            "--quick",
            "--k",
            "1",
            "--done-on",
            "2",
            "--dir",
        ])
        .arg(dir.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = common::stdout(&o);
    assert!(text.contains("instances/s"), "{text}");
    let last = text.lines().last().unwrap_or_default();
    let line: Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(line["polls_total"].as_u64(), Some(2 * 50), "{line}");
    assert_eq!(line["variant"], "bench-anchor,sleep100ms,c512");
}
