//! Benchmark 4: how cost grows from 1k to 100k subjects.
//!
//! Runs the transitions, scale and makespan benchmarks at each size and
//! prints one table: a row per figure, a column per size, and the growth of the
//! cost per subject from the smallest to the largest size (1.0 = linear growth,
//! below 1 = better than linear).

use std::path::PathBuf;

use serde_json::json;

use super::{
    machine, machine_line, makespan, round, scale, thousands, transitions, BenchError, Report,
};
use crate::report::table::Table;

/// Parameters.
#[derive(Clone, Debug)]
pub struct GrowthOpts {
    /// Sizes (subjects / instances), smallest first.
    pub sizes: Vec<u32>,
    /// Steps per instance in the transitions benchmark.
    pub steps: u32,
    /// Rate limit of the makespan benchmark.
    pub rate: u32,
    /// Skip these benchmarks (`transitions`, `scale`, `makespan`).
    pub skip: Vec<String>,
    /// Scratch directory.
    pub dir: Option<PathBuf>,
}

impl Default for GrowthOpts {
    fn default() -> Self {
        GrowthOpts {
            sizes: vec![1_000, 10_000, 100_000],
            steps: 10,
            rate: 20,
            skip: Vec::new(),
            dir: None,
        }
    }
}

/// How a figure's cost per subject is derived from its value at size n.
#[derive(Clone, Copy)]
enum Unit {
    /// A total (bytes, seconds): cost per subject = value / n.
    Total,
    /// Already per subject or per transition: cost = value.
    PerSubject,
    /// A rate: cost per unit = 1 / value.
    Rate,
}

struct Row {
    name: &'static str,
    unit: Unit,
    values: Vec<Option<f64>>,
    fmt: fn(f64) -> String,
}

impl Row {
    fn new(name: &'static str, unit: Unit, fmt: fn(f64) -> String, n: usize) -> Row {
        Row {
            name,
            unit,
            values: vec![None; n],
            fmt,
        }
    }

    /// Cost per subject at the largest size over the smallest.
    fn growth(&self, sizes: &[u32]) -> Option<f64> {
        let (i, j) = (0, sizes.len().checked_sub(1)?);
        let (a, b) = (self.values.get(i).copied()??, self.values.get(j).copied()??);
        let (na, nb) = (f64::from(sizes[i]), f64::from(sizes[j]));
        let (ca, cb) = match self.unit {
            Unit::Total => (a / na, b / nb),
            Unit::PerSubject => (a, b),
            Unit::Rate => (1.0 / a, 1.0 / b),
        };
        (ca > 0.0).then(|| cb / ca)
    }
}

/// Run every benchmark at every size and build the report.
pub fn run(opts: &GrowthOpts) -> Result<Report, BenchError> {
    let m = machine();
    let n = opts.sizes.len();
    let mb = |x: f64| format!("{:.1}", x / 1e6);
    let secs = |x: f64| format!("{x:.2}");
    let ratio = |x: f64| format!("{x:.3}");
    let count = |x: f64| thousands(x.round() as u64);
    let one = |x: f64| format!("{x:.1}");
    let mut rows = vec![
        Row::new("durable transitions/s", Unit::Rate, count, n),
        Row::new("commit p99 (ms)", Unit::PerSubject, one, n),
        Row::new("state directory (MB)", Unit::Total, mb, n),
        Row::new("peak RSS after resume (MB)", Unit::Total, mb, n),
        Row::new("resume → first poll (s)", Unit::Total, secs, n),
        Row::new("resume → all overdue polled (s)", Unit::Total, secs, n),
        Row::new("makespan / lower bound", Unit::PerSubject, ratio, n),
        Row::new("backend calls per subject", Unit::PerSubject, one, n),
        Row::new("makespan run, real time (s)", Unit::Total, secs, n),
        Row::new("daemon view of a driven run (µs)", Unit::Total, one, n),
        Row::new("the same read from the store (ms)", Unit::Total, one, n),
    ];
    let skip = |b: &str| opts.skip.iter().any(|s| s == b);
    let mut raw = Vec::new();
    for (i, &size) in opts.sizes.iter().enumerate() {
        let mut doc = json!({"size": size});
        if !skip("transitions") {
            let o = transitions::TransitionsOpts {
                instances: size,
                steps: opts.steps,
                naive_instances: 0,
                dir: opts.dir.clone(),
                ..transitions::TransitionsOpts::default()
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let f = rt.block_on(transitions::wave(&o, size, true))?;
            rows[0].values[i] = Some(f.per_second);
            rows[1].values[i] = Some(f.p99_ms);
            rows[9].values[i] = Some(f.live_view_us);
            rows[10].values[i] = Some(f.store_read_ms);
            doc["transitions"] =
                json!({"per_s": round(f.per_second, 0), "p99_ms": round(f.p99_ms, 2)});
        }
        if !skip("scale") {
            let o = scale::ScaleOpts {
                instances: size,
                dir: opts.dir.clone(),
                ..scale::ScaleOpts::default()
            };
            let f = scale::measure(&o)?;
            rows[2].values[i] = Some(f.size_created.0 as f64);
            rows[3].values[i] = Some(f.after_kill.hwm as f64);
            rows[4].values[i] = Some(f.after_kill.first_poll.as_secs_f64());
            rows[5].values[i] = Some(f.after_kill.drained.as_secs_f64());
            doc["scale"] = f.to_json();
        }
        if !skip("makespan") {
            let o = makespan::MakespanOpts {
                subjects: size,
                rate: opts.rate,
                dir: opts.dir.clone(),
                ..makespan::MakespanOpts::default()
            };
            let f = makespan::measure(&o)?;
            rows[6].values[i] = Some(f.ratio());
            rows[7].values[i] = Some(f.calls_per_subject());
            rows[8].values[i] = Some(f.real_seconds);
            doc["makespan"] = f.to_json();
        }
        raw.push(doc);
    }
    let mut header = vec!["figure".to_string()];
    header.extend(opts.sizes.iter().map(|s| thousands(u64::from(*s))));
    header.push("cost/subject growth".into());
    let mut table = Table::new(header);
    for r in rows.iter().filter(|r| r.values.iter().any(Option::is_some)) {
        let mut cells = vec![r.name.to_string()];
        cells.extend(
            r.values
                .iter()
                .map(|v| v.map_or_else(|| "-".to_string(), r.fmt)),
        );
        cells.push(
            r.growth(&opts.sizes)
                .map_or("-".into(), |g| format!("{g:.2}×")),
        );
        table.row(cells);
    }
    Ok(Report {
        title: "Cost growth".into(),
        table,
        notes: vec![
            format!(
                "growth = cost per subject (per transition for rates) at {} over {}: 1.00× is linear, below is better than linear; \
                 transitions: {} steps each, group commit; makespan: {}/s throttle limit",
                thousands(u64::from(*opts.sizes.last().unwrap_or(&0))),
                thousands(u64::from(*opts.sizes.first().unwrap_or(&0))),
                opts.steps,
                opts.rate
            ),
            machine_line(&m),
        ],
        json: json!({
            "benchmark": "growth",
            "sizes": opts.sizes,
            "runs": raw,
            "growth": rows.iter().map(|r| (r.name.to_string(), json!(r.growth(&opts.sizes).map(|g| round(g, 3))))).collect::<serde_json::Map<_, _>>(),
            "machine": m,
        }),
    })
}
