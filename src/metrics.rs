//! Process-wide metrics and their Prometheus text exposition.
//!
//! The engine records into [`global()`] (atomics, one small mutex-guarded map);
//! the daemon's `GET /metrics` takes a [`Registry::families`] snapshot, adds what
//! it computes at scrape time (instances per state, commit counters) and encodes
//! everything with [`encode`]. No dependency: the format is a few lines of text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Prometheus metric type, for the `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One line of a family: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Appended to the family name (`_bucket`, `_sum`, `_count`, or empty).
    pub suffix: &'static str,
    /// Label names and values, in output order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family: one `# HELP`, one `# TYPE` and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Metric name (`portflow_…`).
    pub name: &'static str,
    /// One-line description.
    pub help: &'static str,
    /// Type.
    pub kind: MetricType,
    /// Samples, in output order.
    pub samples: Vec<Sample>,
}

impl Family {
    /// An empty family.
    pub fn new(name: &'static str, help: &'static str, kind: MetricType) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Add a sample without suffix.
    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Family {
        self.push("", labels, value);
        self
    }

    fn push(&mut self, suffix: &'static str, labels: &[(&str, &str)], value: f64) {
        self.samples.push(Sample {
            suffix,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }
}

/// Upper bounds (seconds) of the commit-latency histogram's buckets.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (seconds) of the outage-length histogram: a minute to two days
/// (numbers are moved at night; a day-long outage is a real case, not a tail).
pub const OUTAGE_BUCKETS: &[f64] = &[
    60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0,
];

/// A fixed-bucket histogram of durations, lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A consistent-enough copy of a [`Histogram`] (cumulative buckets).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations ≤ bound)`, then `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Record one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts; `count` is the `+Inf` bucket, so the two always agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            running += c.load(Ordering::Relaxed);
            buckets.push((
                self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                running,
            ));
        }
        HistogramSnapshot {
            buckets,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: running,
        }
    }

    /// As a family named `name`.
    pub fn family(&self, name: &'static str, help: &'static str) -> Family {
        self.snapshot().family(name, help)
    }
}

impl HistogramSnapshot {
    /// No observations, with these upper bounds (ascending, seconds).
    pub fn empty(bounds: &[f64]) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .map(|b| (b, 0))
                .collect(),
            sum: 0.0,
            count: 0,
        }
    }

    /// Add the observations of `other`, which must have the same bounds
    /// (buckets whose bounds differ are left alone).
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for ((le, n), (other_le, m)) in self.buckets.iter_mut().zip(&other.buckets) {
            if le == other_le {
                *n += m;
            }
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// As a family named `name`.
    pub fn family(&self, name: &'static str, help: &'static str) -> Family {
        let mut f = Family::new(name, help, MetricType::Histogram);
        for (le, n) in &self.buckets {
            f.push("_bucket", &[("le", &format_value(*le))], *n as f64);
        }
        f.push("_sum", &[], self.sum);
        f.push("_count", &[], self.count as f64);
        f
    }
}

/// How a tenant call was made: an action (`Effect::Invoke`) or a poll (`Effect::Observe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallKind {
    /// A step's action.
    Action,
    /// A wait's observation.
    Poll,
}

impl CallKind {
    fn as_str(self) -> &'static str {
        match self {
            CallKind::Action => "action",
            CallKind::Poll => "poll",
        }
    }
}

/// Everything the engine counts in this process.
#[derive(Debug)]
pub struct Registry {
    /// (operation, kind, outcome) → calls.
    calls: Mutex<BTreeMap<(&'static str, CallKind, &'static str), u64>>,
    throttled: AtomicU64,
    limiter_waits: AtomicU64,
    commit_seconds: Histogram,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            calls: Mutex::new(BTreeMap::new()),
            throttled: AtomicU64::new(0),
            limiter_waits: AtomicU64::new(0),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
        }
    }
}

/// The process-wide registry.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

impl Registry {
    /// Count one tenant call. `outcome` is `ok` or the error kind
    /// ([`crate::backend::ErrorKind::as_str`]); `throttled` also counts as a
    /// throttling event.
    pub fn backend_call(&self, operation: &'static str, kind: CallKind, outcome: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((operation, kind, outcome))
            .or_insert(0) += 1;
        if outcome == crate::backend::ErrorKind::Throttled.as_str() {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one call that waited for the run's own rate limiter.
    pub fn rate_limiter_wait(&self) {
        self.limiter_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Record how long a durable commit took for its caller.
    pub fn commit_latency(&self, d: Duration) {
        self.commit_seconds.observe(d);
    }

    /// Snapshot of every family this registry holds.
    pub fn families(&self) -> Vec<Family> {
        let mut calls = Family::new(
            "portflow_backend_calls_total",
            "Tenant calls made by the executor, by operation, kind (action or poll) and outcome.",
            MetricType::Counter,
        );
        for ((op, kind, outcome), n) in self.calls.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            calls = calls.sample(
                &[
                    ("operation", op),
                    ("kind", kind.as_str()),
                    ("outcome", outcome),
                ],
                *n as f64,
            );
        }
        vec![
            calls,
            Family::new(
                "portflow_throttling_events_total",
                "Tenant answers that were a throttle (HTTP 429 / TooManyRequests).",
                MetricType::Counter,
            )
            .sample(&[], self.throttled.load(Ordering::Relaxed) as f64),
            Family::new(
                "portflow_rate_limiter_waits_total",
                "Tenant calls that waited for a slot of the run's own rate limiter (the run file's rate_limit).",
                MetricType::Counter,
            )
            .sample(&[], self.limiter_waits.load(Ordering::Relaxed) as f64),
            self.commit_seconds.family(
                "portflow_transition_commit_seconds",
                "Time from handing a batch to the group committer until it is durable, as its caller sees it.",
            ),
        ]
    }
}

/// A number as Prometheus writes it (`+Inf`, `NaN`, shortest round-trip otherwise).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Escape a label value: backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escape `# HELP` text: backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition format 0.0.4.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for s in &f.samples {
            out.push_str(f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(s.value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_writes_help_type_and_escaped_labels() {
        let f = Family::new(
            "t_total",
            "A help\\text\nwith newline.",
            MetricType::Counter,
        )
        .sample(&[("run", "a\"b\\c\nd"), ("state", "ok")], 3.0)
        .sample(&[], 0.5);
        let text = encode(&[f]);
        assert_eq!(
            text,
            "# HELP t_total A help\\\\text\\nwith newline.\n\
             # TYPE t_total counter\n\
             t_total{run=\"a\\\"b\\\\c\\nd\",state=\"ok\"} 3\n\
             t_total 0.5\n"
        );
    }

    #[test]
    fn special_values_use_prometheus_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.0005), "0.0005");
        assert_eq!(format_value(12.0), "12");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_agree_with_count() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500)); // ≤ 0.001
        h.observe(Duration::from_millis(1)); // = 0.001: `le` is inclusive
        h.observe(Duration::from_millis(5)); // ≤ 0.01
        h.observe(Duration::from_secs(2)); // +Inf only
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(0.001, 2), (0.01, 3), (0.1, 3), (f64::INFINITY, 4)]
        );
        assert_eq!(s.count, 4);
        assert!((s.sum - 2.0065).abs() < 1e-9, "{}", s.sum);

        let text = encode(&[h.family("lat_seconds", "Latency.")]);
        assert!(text.contains("# TYPE lat_seconds histogram\n"), "{text}");
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_sum 2.0065\n"), "{text}");
        assert!(text.contains("lat_seconds_count 4\n"), "{text}");
        // Buckets come in ascending order, before _sum and _count.
        let pos = |s: &str| text.find(s).unwrap_or(usize::MAX);
        assert!(pos("le=\"0.01\"") < pos("le=\"0.1\""));
        assert!(pos("le=\"+Inf\"") < pos("lat_seconds_sum"));
    }

    #[test]
    fn snapshots_add_bucket_by_bucket() {
        let a = Histogram::new(OUTAGE_BUCKETS);
        a.observe(Duration::from_secs(60)); // le 60 is inclusive
        a.observe(Duration::from_secs(25 * 3600)); // past a day: the 2-day bucket
        let b = Histogram::new(OUTAGE_BUCKETS);
        b.observe(Duration::from_secs(3 * 86400)); // past every bound: +Inf only
        let mut total = HistogramSnapshot::empty(OUTAGE_BUCKETS);
        total.add(&a.snapshot());
        total.add(&b.snapshot());
        assert_eq!(total.count, 3);
        assert_eq!(total.buckets.first(), Some(&(60.0, 1)));
        assert_eq!(total.buckets.get(9), Some(&(86400.0, 1)));
        assert_eq!(total.buckets.get(10), Some(&(172800.0, 2)));
        assert_eq!(total.buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!((total.sum - (60.0 + 25.0 * 3600.0 + 3.0 * 86400.0)).abs() < 1e-6);
    }

    #[test]
    fn registry_counts_calls_by_operation_kind_and_outcome() {
        let r = Registry::default();
        r.backend_call("get_user", CallKind::Poll, "ok");
        r.backend_call("get_user", CallKind::Poll, "ok");
        r.backend_call("assign_number", CallKind::Action, "throttled");
        r.rate_limiter_wait();
        r.commit_latency(Duration::from_millis(2));
        let text = encode(&r.families());
        assert!(
            text.contains(
                "portflow_backend_calls_total{operation=\"get_user\",kind=\"poll\",outcome=\"ok\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("portflow_backend_calls_total{operation=\"assign_number\",kind=\"action\",outcome=\"throttled\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("portflow_throttling_events_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("portflow_rate_limiter_waits_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("portflow_transition_commit_seconds_bucket{le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("portflow_transition_commit_seconds_count 1\n"),
            "{text}"
        );
    }
}
