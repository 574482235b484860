//! The daemon's HTTP API as types: every request and response body that
//! crosses the process boundary between `crate::daemon` and `crate::client`.
//! `Serialize` and `Deserialize` for such data are derived here and nowhere else.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name of the file (in the state directory) telling clients where the daemon is.
pub const DAEMON_FILE: &str = "daemon.json";

/// `<state>/daemon.json`: where the daemon listens and its token.
#[derive(Debug, Serialize, Deserialize)]
pub struct DaemonFile {
    /// `host:port`.
    pub address: String,
    /// The bearer token.
    pub token: String,
    /// The daemon's process id.
    #[serde(default)]
    pub pid: u32,
    /// Written by a foreground `run`/`resume` (it drives only its own run), not
    /// by `portflow serve`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreground: bool,
}

/// Every error answer: `{"error": …, "hint": …}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    #[serde(default)]
    pub error: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Body of `POST /api/runs/{run}/{approve|signal|cancel|retry|continue|resume}`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperateBody {
    /// Only this subject (default: every instance of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `approve`, `signal`: these subjects; the answer gives each one's outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// `approve`, `signal`: every instance waiting at this step for this gate
    /// or signal; the answer gives each one's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_at: Option<String>,
    /// `approve`: the gate step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `signal`: its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `signal`: data sent with it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// `cancel`: undo what was done first.
    #[serde(default)]
    pub rollback: bool,
    /// `cancel`: why; `retry`: why the inputs are amended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `retry`: the step to continue from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_step: Option<String>,
    /// `retry` of one `subject`: inputs to give new values first (input name →
    /// value as a run file writes it; empty: none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub set: std::collections::BTreeMap<String, String>,
    /// Who sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Answer to an operator input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    /// Run id.
    pub run: String,
    /// The verb.
    pub action: String,
    /// Instances the input changed.
    pub changed: usize,
    /// Instances it did not apply to.
    pub unchanged: usize,
    /// Whether a live driver applies it (nothing to resume); false when it was
    /// only stored.
    #[serde(default)]
    pub driven: bool,
    /// Each addressed subject's outcome, for a request with `subjects` or
    /// `waiting_at` (such a request is answered even when nothing changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<SubjectApplied>,
    /// Subjects of `subjects` the run does not have: when there are any,
    /// nothing was applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

impl OperateBody {
    /// Whether it addresses a list of subjects (`subjects`, `waiting_at`),
    /// answered per subject.
    pub fn is_bulk(&self) -> bool {
        !self.subjects.is_empty() || self.waiting_at.is_some()
    }
}

/// What an input did to one subject of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectApplied {
    /// The subject.
    pub subject: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why it failed (`outcome: failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an input did to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It applied.
    Changed,
    /// The instance does not wait for it (elsewhere, or ended).
    NotWaiting,
    /// Applying it failed.
    Failed,
}

/// Answer to `POST /api/runs/{run}/continue`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Continued {
    /// Run id.
    pub run: String,
    /// `continue`.
    pub action: String,
    /// Failures accepted.
    pub accepted: u32,
}

/// Answer to `POST /api/runs/{run}/resume`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resumed {
    /// Run id.
    pub run: String,
    /// `resume`.
    pub action: String,
    /// Whether a driver runs it now.
    pub active: bool,
}

/// Body of `POST /api/runs` and `POST /api/cli/plan`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFileBody {
    /// Absolute path of the run file (the daemon's working directory is not the caller's).
    pub run_file: PathBuf,
    /// `plan` only: JSON output.
    #[serde(default)]
    pub json: bool,
    /// `plan` only: `csv` or `html` (a report instead of the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Answer to `POST /api/runs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunStarted {
    /// Run id.
    pub run: String,
    /// Subjects in it.
    pub subjects: u32,
    /// The line `run` prints when a run starts.
    pub started: String,
}

/// Text a CLI command prints, made by the daemon (`GET /api/cli/{command}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Output {
    /// The text.
    pub output: String,
    /// `plan`: its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// Query of `GET /api/cli/{resolve|status|show|outages|sim-log|sim-outages}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CliQuery {
    /// Run id (`resolve`: a prefix of it).
    #[serde(default)]
    pub run: String,
    /// Subject (`show`), user (`sim-log`).
    #[serde(default)]
    pub subject: String,
    /// JSON output.
    #[serde(default)]
    pub json: bool,
    /// `sim-log` / `sim-outages`: the tenant (name or run id).
    #[serde(default)]
    pub tenant: String,
    /// `outages`: CSV output.
    #[serde(default)]
    pub csv: bool,
    /// `report`: `json`, `csv` or `html`.
    #[serde(default)]
    pub format: String,
    /// `report`: the display time zone (IANA name; empty: the run's default).
    #[serde(default)]
    pub tz: String,
}

/// Query of `GET /runs/{run}/report.{csv,json,html}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReportQuery {
    /// Display time zone (IANA name; default: the run's porting window's, else UTC).
    #[serde(default)]
    pub tz: Option<String>,
}

/// Body of `POST /api/backup`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    /// Absolute path of a directory that does not exist yet.
    pub dest: PathBuf,
}

/// What a backup copied (also written to `backup.json` in it).
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupDone {
    /// The backup directory.
    pub backup: PathBuf,
    /// The state directory copied.
    pub from: PathBuf,
    /// When (RFC 3339).
    pub taken_at: String,
    /// The portflow version that took it.
    pub portflow: String,
    /// Keys copied from the engine store.
    pub engine_keys: u64,
    /// Each simulated tenant.
    pub simulated_tenants: Vec<TenantCopy>,
}

/// One simulated tenant in a backup.
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantCopy {
    /// Its name.
    pub tenant: String,
    /// Keys copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// Why it was not copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Query of `GET /api/runs/{run}/instances`.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstancesQuery {
    /// Only instances in this state (`failed`, `window`, `blocked`, …).
    #[serde(default)]
    pub state: Option<String>,
    /// First row.
    #[serde(default)]
    pub offset: usize,
    /// Rows at most.
    #[serde(default = "default_page")]
    pub limit: usize,
}

fn default_page() -> usize {
    100
}

/// Query of `GET /api/attention`, `/api/out-of-service` and `/api/worklist`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LimitQuery {
    /// Rows at most.
    pub limit: Option<usize>,
}

/// Query of `GET /api/subjects`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SearchQuery {
    /// A subject or part of one (case-insensitive).
    #[serde(default)]
    pub q: String,
    /// Matches at most.
    pub limit: Option<usize>,
}

/// Query of `GET /` (the status page).
#[derive(Debug, Serialize, Deserialize)]
pub struct PageQuery {
    /// A token to trade for the cookie.
    pub token: Option<String>,
}

/// Body of `POST /login` (the sign-in form).
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginForm {
    /// The token typed in.
    #[serde(default)]
    pub token: String,
}

/// Body of `POST /api/schedules`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSchedules {
    /// The schedules.
    pub schedules: Vec<crate::schedule::ScheduleSpec>,
    /// Replace schedules of the same name.
    #[serde(default)]
    pub replace: bool,
}

/// Percent-encode a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a client following a run reads of `GET /api/runs/{run}` (the run's
/// summary document; other fields are ignored).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunProgress {
    /// Run id.
    #[serde(default)]
    pub run: String,
    /// Whether a driver runs it now.
    #[serde(default)]
    pub active: bool,
    /// Instances per state.
    #[serde(default)]
    pub states: std::collections::BTreeMap<String, u64>,
    /// Who is out of service.
    #[serde(default)]
    pub out_of_service: OutOfServiceNow,
    /// The breaker's pause, when it tripped.
    #[serde(default)]
    pub paused: Option<Value>,
    /// The outcome so far.
    #[serde(default)]
    pub outcome: Option<OutcomeCode>,
}

/// `out_of_service` of a run summary.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutOfServiceNow {
    /// Subjects out of service now.
    #[serde(default)]
    pub now: u64,
}

/// `outcome` of a run summary.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutcomeCode {
    /// The exit code a local run would have had.
    pub exit_code: u8,
}

/// What a client reads of `GET /api/runs`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunList {
    /// The runs, oldest first.
    #[serde(default)]
    pub runs: Vec<RunListed>,
}

/// One run of [`RunList`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunListed {
    /// Run id.
    pub run: String,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<crate::clock::Timestamp>,
    /// Whether a driver runs it now.
    #[serde(default)]
    pub active: bool,
}
