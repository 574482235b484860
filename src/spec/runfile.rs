//! The run file model: which workflow, which backend, which subjects, how fast.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;

/// Moved to [`crate::backend::config`]; re-exported so `spec` paths keep working.
pub use crate::backend::config::BackendConfig;
use crate::backend::AddressMode;

/// A run file (`examples/*.yaml`) as written by the user.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// Workflow name (looked up in the workflow directories, then the built-in
    /// set) or a path to a workflow file (relative to the run file).
    pub workflow: String,
    /// Free label shown in `status`.
    #[serde(default)]
    pub label: Option<String>,
    /// Backend and tenant.
    #[serde(default)]
    pub backend: BackendConfig,
    /// Who to migrate.
    pub subjects: SubjectsSpec,
    /// Instances acting or polling at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Backend calls per second across the run (virtual seconds); none = unlimited.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Longest one backend call may take, on the run's clock: past it the call
    /// is a transient failure whose outcome is unknown, and an action is
    /// reconciled as after a crash (`2m` by default).
    #[serde(
        default = "default_call_timeout",
        deserialize_with = "crate::clock::duration"
    )]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub call_timeout: std::time::Duration,
    /// Gate step ids approved up front for every subject.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// Virtual seconds per real second (simulator only; 1 for real tenants).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// Porting window: steps marked `window: true` start only inside it.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Override of the workflow's failure policy (`stop` or `rollback`).
    #[serde(default)]
    pub on_failure: Option<crate::spec::model::OnFailure>,
    /// At most this many subjects out of service at once: between an
    /// outage-causing action and the verification that service is back. Others
    /// wait, durably, in the `held` phase. None = no limit.
    #[serde(default)]
    pub max_out_of_service: Option<u32>,
    /// Circuit breaker: after this many failures (or this share of the run's
    /// subjects) among subjects taken out of service, new outage steps pause
    /// until `portflow resume --continue`.
    #[serde(default)]
    pub stop_after_failures: Option<FailureLimit>,
    /// Workflows whose steps follow the main workflow's for every subject
    /// (e.g. `[send-conferencing-info]`); their inputs come from the same subject.
    #[serde(default)]
    pub then: Vec<String>,
    /// The operator the numbers go to, and who sets their emergency address.
    /// Before the upload the Operator Connect number does not exist, so its
    /// mode cannot be read: the run declares it.
    #[serde(default)]
    pub operator: Option<OperatorSpec>,
}

/// `operator:` of a run file. Fills the workflow inputs `address_mode` and
/// `operator` of every subject whose row does not give them.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    /// The operator's name, for messages (input `operator`).
    #[serde(default)]
    pub name: Option<String>,
    /// Who sets the emergency address of the uploaded numbers (input `address_mode`).
    pub address_mode: AddressMode,
}

impl OperatorSpec {
    /// Workflow input filled from `address_mode`.
    pub const MODE_INPUT: &'static str = "address_mode";
    /// Workflow input filled from `name`.
    pub const NAME_INPUT: &'static str = "operator";
}

impl RunFile {
    /// Values out of bounds (see [`crate::spec::limits`]), as (path, message):
    /// the path names the node, as serde_yaml writes paths.
    pub fn problems(&self) -> Vec<(String, String)> {
        use crate::spec::limits::*;
        let mut out = Vec::new();
        let mut bad = |path: &str, msg: String| out.push((path.to_string(), msg));
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            bad(
                "concurrency",
                format!(
                    "concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                    self.concurrency
                ),
            );
        }
        if !(MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(&self.time_scale) {
            bad(
                "time_scale",
                format!(
                    "time_scale must be between {MIN_TIME_SCALE} and {MAX_TIME_SCALE} \
                     (virtual seconds per real second), got {}",
                    self.time_scale
                ),
            );
        }
        if !(MIN_CALL_TIMEOUT..=MAX_CALL_TIMEOUT).contains(&self.call_timeout) {
            bad(
                "call_timeout",
                format!(
                    "call_timeout must be between {} and {}, got {}",
                    human_duration(MIN_CALL_TIMEOUT),
                    human_duration(MAX_CALL_TIMEOUT),
                    humantime::format_duration(self.call_timeout)
                ),
            );
        }
        if self.max_out_of_service == Some(0) {
            bad(
                "max_out_of_service",
                "max_out_of_service must be at least 1 (leave it out for no limit)".into(),
            );
        }
        if let Some(r) = self.rate_limit {
            if !(MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&r) {
                bad(
                    "rate_limit",
                    format!(
                        "rate_limit must be between {MIN_RATE_LIMIT} and {MAX_RATE_LIMIT} \
                         calls per second, got {r}"
                    ),
                );
            }
        }
        if let Some(w) = &self.window {
            if let Err(e) = w.compile() {
                let at = match e {
                    crate::schedule::ScheduleError::Duration { .. } => "window.duration",
                    _ => "window",
                };
                bad(at, format!("window: {e}"));
            }
        }
        if self.approvals.len() > MAX_STEPS {
            bad(
                "approvals",
                format!(
                    "approvals: {} gates; at most {MAX_STEPS}",
                    self.approvals.len()
                ),
            );
        }
        if self.then.len() > MAX_THEN {
            bad(
                "then",
                format!(
                    "then: {} workflows chained; at most {MAX_THEN}",
                    self.then.len()
                ),
            );
        }
        if let Err(e) = self.backend.check_time_scale(self.time_scale) {
            out.push(("time_scale".into(), e));
        }
        for (path, msg) in self.backend.problems() {
            out.push((format!("backend.{path}"), msg));
        }
        if let crate::backend::BackendConfig::Microsoft(ms) = &self.backend {
            // The engine's own deadline must not cut a cmdlet's short: the
            // host would be abandoned mid-request instead of timing out.
            let parts = [
                ("teams", &ms.powershell.teams),
                ("onprem", &ms.powershell.onprem),
            ];
            for (name, part) in parts {
                let Some(part) = part else { continue };
                let t = part
                    .timeout
                    .unwrap_or(crate::backend::powershell_config::DEFAULT_TIMEOUT);
                if t >= self.call_timeout {
                    let at = format!("backend.powershell.{name}.timeout");
                    out.push((
                        at.clone(),
                        format!(
                            "{at}: {} is not below the run's call_timeout ({}): raise call_timeout \
                             (e.g. call_timeout: {}) or lower the timeout",
                            humantime::format_duration(t),
                            humantime::format_duration(self.call_timeout),
                            humantime::format_duration(t + std::time::Duration::from_secs(60)),
                        ),
                    ));
                }
            }
        }
        out
    }
}

fn default_concurrency() -> usize {
    20
}
fn default_time_scale() -> f64 {
    1.0
}
fn default_call_timeout() -> std::time::Duration {
    DEFAULT_CALL_TIMEOUT
}

/// `call_timeout` when the run file does not set one.
pub const DEFAULT_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A recurring porting window: opens at each `cron` fire time (5-field crontab,
/// in `timezone`) and stays open for `duration`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// When it opens, e.g. `0 22 * * MON-FRI`.
    pub cron: String,
    /// How long it stays open, e.g. `6h`.
    pub duration: String,
    /// IANA time zone, e.g. `Europe/Berlin` (default UTC).
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

impl WindowSpec {
    /// Compile it.
    pub fn compile(&self) -> Result<crate::schedule::Window, crate::schedule::ScheduleError> {
        crate::schedule::Window::parse(&self.cron, &self.duration, &self.timezone)
    }

    /// Its time zone (a report's display zone when the operator names none).
    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        crate::report::zone::parse_zone(&self.timezone).ok()
    }
}

fn default_timezone() -> String {
    "UTC".into()
}

/// Where subjects come from: an inline list of input maps, or a CSV file whose
/// header names the workflow's inputs.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SubjectsSpec {
    /// `subjects: {csv: users.csv}` (path relative to the run file).
    Csv {
        /// CSV path.
        csv: PathBuf,
    },
    /// `subjects: [{user: a@contoso.com, number: "+1…"}, …]`.
    #[schemars(with = "Vec<IndexMap<String, crate::spec::schema::QuotedText>>")]
    Inline(Vec<IndexMap<String, String>>),
}

/// One subject's inputs, with where it was defined (for messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// Input name → value (empty values are absent).
    pub inputs: IndexMap<String, String>,
    /// `file:line` of its definition.
    pub origin: String,
}

/// `stop_after_failures`: a count (`3`) or a share of the run's subjects (`5%`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailureLimit {
    /// This many failures.
    Count(u32),
    /// This percentage of the run's subjects (rounded up, at least 1).
    Percent(f64),
}

impl FailureLimit {
    /// Parse `3` or `5%`.
    pub fn parse(s: &str) -> Result<FailureLimit, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 100.0 => Ok(FailureLimit::Percent(v)),
                _ => Err(format!(
                    "{s:?} is not a percentage between 0 and 100 (write e.g. 5%)"
                )),
            }
        } else {
            match t.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(FailureLimit::Count(n)),
                _ => Err(format!(
                    "{s:?} is not a whole number of failures of at least 1 or a percentage (write e.g. 3 or 5%)"
                )),
            }
        }
    }

    /// Failures that trip the breaker in a run of `subjects`.
    pub fn threshold(self, subjects: u32) -> u32 {
        match self {
            FailureLimit::Count(n) => n,
            FailureLimit::Percent(p) => ((f64::from(subjects) * p / 100.0).ceil() as u32).max(1),
        }
    }
}

impl std::fmt::Display for FailureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureLimit::Count(n) => write!(f, "{n}"),
            FailureLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for FailureLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor (not a Value) keeps the scalar's position in the error.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FailureLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of failures (3) or a percentage (5%)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FailureLimit, E> {
                FailureLimit::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FailureLimit, E> {
                FailureLimit::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<FailureLimit, E> {
                FailureLimit::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FailureLimit, E> {
                FailureLimit::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::FailureLimit;

    #[test]
    fn failure_limits_parse_and_scale_with_the_run() {
        assert_eq!(FailureLimit::parse("3"), Ok(FailureLimit::Count(3)));
        assert_eq!(FailureLimit::parse(" 5% "), Ok(FailureLimit::Percent(5.0)));
        assert!(FailureLimit::parse("0").is_err());
        assert!(FailureLimit::parse("0%").is_err());
        assert!(FailureLimit::parse("101%").is_err());
        assert_eq!(FailureLimit::Count(3).threshold(1000), 3);
        assert_eq!(FailureLimit::Percent(5.0).threshold(200), 10);
        assert_eq!(FailureLimit::Percent(5.0).threshold(30), 2, "rounded up");
        assert_eq!(FailureLimit::Percent(0.1).threshold(10), 1, "at least 1");
    }
}
