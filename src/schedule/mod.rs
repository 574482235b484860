//! Scheduling: when porting waves start and when engineers may port.
//!
//! - [`CronSchedule`]: a standard 5-field crontab expression in an IANA time zone,
//!   with DST rules stated on the type.
//! - [`Window`]: a porting window, a cron start plus a duration.
//! - [`missed_fires`] / [`decide_overlap`]: pure catch-up and overlap policies for a
//!   daemon that was down or whose previous run is still going.
//! - [`ScheduleSpec`]: the serde form users write, compiled by [`ScheduleSpec::validate`].
//!
//! Nothing here reads the system clock: every function takes the current instant.

mod catchup;
mod cron;
mod spec;
mod state;
mod window;

pub use catchup::{
    decide_overlap, missed_fires, CatchUp, Overlap, OverlapDecision, MAX_CATCH_UP_FIRES,
};
pub use cron::CronSchedule;
pub use spec::{CatchUpSpec, CompiledSchedule, Launch, ScheduleSpec};
pub use state::{due_fires, FireLog, FireOutcome, PendingLaunch, ScheduleRecord, ON_TIME_GRACE};
pub use window::Window;

/// Everything that can be wrong with a schedule, a window or a schedule spec.
///
/// Each message is one line and says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is empty or only whitespace.
    #[error("empty cron expression: write 5 fields, e.g. `0 22 * * MON-FRI`")]
    Empty,
    /// The expression has 6 or 7 fields: a seconds (and year) form.
    #[error(
        "`{expr}` has {found} fields (a seconds/year form): write 5 fields \
         (minute hour day-of-month month day-of-week), e.g. `0 22 * * MON-FRI`"
    )]
    SecondsForm {
        /// The expression as written.
        expr: String,
        /// How many fields it has.
        found: usize,
    },
    /// Neither 5 fields nor a seconds form.
    #[error(
        "`{expr}` has {found} field(s): write 5 fields \
         (minute hour day-of-month month day-of-week), e.g. `0 22 * * MON-FRI`"
    )]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many fields it has.
        found: usize,
    },
    /// One field is malformed.
    #[error("field {index} ({name}) `{text}` at column {column}: {reason}")]
    Field {
        /// 1-based field number (1 = minute … 5 = day of week).
        index: usize,
        /// Human name of the field.
        name: &'static str,
        /// 1-based column where the field starts in the expression.
        column: usize,
        /// The field as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `@nickname` that is not one of the supported ones.
    #[error("unknown cron nickname `{0}`: use @hourly, @daily, @weekly, @monthly or @yearly")]
    Nickname(String),
    /// The expression is well formed but names no day that exists (e.g. 30 February).
    #[error("`{0}` never fires: no month has that day")]
    NeverFires(String),
    /// croner rejected an expression our own checks let through.
    #[error("invalid cron expression `{expr}`: {message}")]
    Cron {
        /// The expression as written.
        expr: String,
        /// croner's message.
        message: String,
    },
    /// Not an IANA time zone name.
    #[error("unknown time zone `{0}`: use an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`")]
    UnknownTimezone(String),
    /// A duration that humantime cannot parse, or one that is out of bounds.
    #[error("{what} `{text}`: {reason}")]
    Duration {
        /// Which duration (e.g. "window duration").
        what: &'static str,
        /// The text as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A schedule spec field that is out of bounds.
    #[error("schedule `{name}`: {reason}")]
    Spec {
        /// The schedule's name (may be empty when that is the problem).
        name: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::clock::Timestamp;

    /// `2026-03-29T01:00:00Z` → Timestamp; panics on a typo (tests only).
    pub fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
    }
}
