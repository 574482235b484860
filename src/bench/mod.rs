//! Benchmarks of the engine against its limits (`portflow bench …`).
//!
//! Each benchmark measures the real thing: sled in a scratch directory, the
//! group committer, the executor and the simulated tenant. Figures are printed,
//! never asserted: see docs/performance.md for the method and the targets.
//!
//! - [`transitions`]: durable transitions per second, group commit vs one flush per transition.
//! - [`scale`]: 100,000 instances waiting on polls: memory, state size, resume after SIGKILL.
//! - [`makespan`]: a DR → OC wave on the simulator's latency model in virtual time.
//! - [`growth`]: the three at several sizes.
//! - [`anchor`]: the anchors-bench workload, for a table beside Restate and Temporal.

pub mod anchor;
pub mod growth;
pub mod makespan;
pub mod scale;
pub mod tenants;
pub mod transitions;
pub mod vclock;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::report::table::Table;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

impl BenchError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> BenchError {
        BenchError(msg.into())
    }
}

macro_rules! bench_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for BenchError {
            fn from(e: $t) -> BenchError {
                BenchError(e.to_string())
            }
        }
    )*};
}
bench_error_from!(
    std::io::Error,
    crate::store::StoreError,
    crate::engine::executor::EngineError,
    crate::backend::sim::SimError,
    crate::spec::SpecError,
    serde_json::Error
);

/// What a benchmark prints: one table (plus notes), or one JSON document.
#[derive(Debug, Clone)]
pub struct Report {
    /// Heading.
    pub title: String,
    /// The figures.
    pub table: Table,
    /// Lines printed under the table (method, parameters, machine).
    pub notes: Vec<String>,
    /// The same figures for machines.
    pub json: Value,
}

impl Report {
    /// Text form: title, table, notes.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n\n{}", self.title, self.table.render());
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(n);
                out.push('\n');
            }
        }
        out
    }
}

/// The machine and its load, recorded with every report (figures taken on a
/// busy machine are preliminary).
pub fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kb = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let load: Vec<f64> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_mb": mem_kb / 1024,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average": load,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

/// One line describing [`machine`].
pub fn machine_line(m: &Value) -> String {
    let load = m["load_average"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|v| format!("{:.2}", v.as_f64().unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!(
        "machine: {} cores ({}), {} MB RAM, kernel {}, {} build; load average {} at start{}",
        m["cores"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory_mb"],
        m["kernel"].as_str().unwrap_or("?"),
        m["build"].as_str().unwrap_or("?"),
        load,
        if busy(m) {
            " (busy: figures are preliminary)"
        } else {
            ""
        }
    )
}

/// True when the 1-minute load was above half the cores at start.
pub fn busy(m: &Value) -> bool {
    let load = m["load_average"][0].as_f64().unwrap_or(0.0);
    let cores = m["cores"].as_f64().unwrap_or(1.0);
    load > cores * 0.5
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status` (`None` = this process), in bytes.
pub fn proc_status_bytes(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Bytes this process caused to be written to storage (`/proc/self/io`).
pub fn io_write_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    text.lines()
        .find(|l| l.starts_with("write_bytes:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Size of a directory tree: (allocated bytes on disk, apparent bytes).
pub fn dir_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut disk = 0;
    let mut apparent = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                disk += md.blocks() * 512;
                apparent += md.len();
            }
        }
    }
    (disk, apparent)
}

/// A scratch directory, removed when dropped unless kept.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// A new empty directory `<base>/portflow-bench-<what>-<pid>-<n>`; `base`
    /// defaults to the system temporary directory.
    pub fn new(base: Option<&Path>, what: &str, keep: bool) -> Result<WorkDir, BenchError> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let fail = |p: &Path, e: std::io::Error| BenchError::new(format!("{}: {e}", p.display()));
        std::fs::create_dir_all(&base).map_err(|e| fail(&base, e))?;
        // pid + a per-process counter, skipping names a kept run left behind.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = base.join(format!("portflow-bench-{what}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path, keep }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fail(&path, e)),
            }
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Format a count with thousands separators: `110,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as `12.3 MB` (decimal megabytes).
pub fn megabytes(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Round to `digits` decimals for JSON.
pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_reads_proc() {
        assert_eq!(thousands(110_000), "110,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert!(proc_status_bytes(None, "VmRSS").is_some_and(|b| b > 0));
        assert!(machine()["cores"].as_u64().is_some_and(|c| c >= 1));
    }
}
