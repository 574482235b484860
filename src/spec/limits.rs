//! Bounds on every size a user can write, so that no input can make a load,
//! a plan or a run take unbounded time or memory. Each is documented in
//! `docs/workflows.md` and `docs/run-files.md`; exceeding one is an error at
//! the value's `file:line:col`.

use std::time::Duration;

/// Largest workflow, run or schedule file read, in bytes (4 MiB).
pub const MAX_YAML_BYTES: u64 = 4 << 20;
/// Largest CSV subject list read, in bytes (64 MiB).
pub const MAX_CSV_BYTES: u64 = 64 << 20;
/// Deepest nesting of YAML mappings and lists (the shipped files use 7).
pub const MAX_YAML_DEPTH: usize = 64;
/// Most subjects in one run, inline or CSV (the scale measured in
/// `docs/performance.md`); larger migrations go in waves.
pub const MAX_SUBJECTS: usize = 100_000;
/// Longest subject input value (a cell), in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Most steps in one workflow (the largest shipped one has 28).
pub const MAX_STEPS: usize = 200;
/// Most inputs of one workflow (and columns of a CSV list).
pub const MAX_INPUTS: usize = 64;
/// Most `values` of one input.
pub const MAX_VALUES: usize = 100;
/// Problems reported about a run's subjects before portflow stops reading them.
pub const MAX_SUBJECT_PROBLEMS: usize = 1000;
/// Most workflows chained with `then:`.
pub const MAX_THEN: usize = 8;
/// Most schedules in one schedule file.
pub const MAX_SCHEDULES: usize = 100;

/// `concurrency`: at most this many instances acting at once.
pub const MAX_CONCURRENCY: usize = 10_000;
/// `rate_limit`, calls per second: `[MIN_RATE_LIMIT, MAX_RATE_LIMIT]`.
pub const MIN_RATE_LIMIT: f64 = 0.01;
/// See [`MIN_RATE_LIMIT`].
pub const MAX_RATE_LIMIT: f64 = 10_000.0;
/// `time_scale`: `[MIN_TIME_SCALE, MAX_TIME_SCALE]`.
pub const MIN_TIME_SCALE: f64 = 0.01;
/// See [`MIN_TIME_SCALE`].
pub const MAX_TIME_SCALE: f64 = 1_000_000.0;

/// `call_timeout`: `[MIN_CALL_TIMEOUT, MAX_CALL_TIMEOUT]`. Below a second a
/// healthy call would time out; above an hour a hung one holds its worker too long.
pub const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// See [`MIN_CALL_TIMEOUT`].
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// `retry.attempts`: at most this many (the first included).
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest `retry.initial` / `retry.max` and `poll.max`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// Longest porting window and schedule `catch_up.max_age`.
pub const MAX_SPAN: Duration = Duration::from_secs(31 * 24 * 3600);
/// The simulator's bounds live with its config (so `backend` needs nothing
/// from `spec`); re-exported here with every other bound.
pub use crate::backend::sim::{MAX_SIM_COUNT, MAX_SIM_DELAY, MAX_USERS};

/// Byte size as people read it (`4 MiB`, `1.5 KiB`, `300 bytes`).
pub fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Moved to [`crate::clock`]; re-exported here beside the bounds it prints.
pub use crate::clock::human_duration;
