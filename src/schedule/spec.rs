//! The schedule as users write it (YAML/JSON), and its compiled form.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::window::parse_duration;
use super::{
    decide_overlap, missed_fires, CatchUp, CronSchedule, Overlap, OverlapDecision, ScheduleError,
};
use crate::clock::Timestamp;

/// One scheduled launch, as written in a config file:
///
/// ```yaml
/// name: nightly-dr
/// cron: "0 22 * * MON-FRI"
/// timezone: Europe/Berlin
/// overlap: skip            # optional: skip | queue | allow
/// catch_up:                # optional
///   policy: once           # skip | once | all
///   max_age: 6h            # humantime, default 24h
/// launch: {next_wave: {run_file: waves/dr.yaml, size: 500}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Unique name of the schedule.
    pub name: String,
    /// 5-field crontab expression (see [`CronSchedule`]).
    pub cron: String,
    /// IANA time zone the cron times are in.
    pub timezone: String,
    /// What to do when the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
    /// What to do about fire times missed while the daemon was down.
    #[serde(default)]
    pub catch_up: CatchUpSpec,
    /// What each fire launches.
    pub launch: Launch,
}

/// Catch-up settings of a [`ScheduleSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchUpSpec {
    /// Which missed fire times to run.
    #[serde(default)]
    pub policy: CatchUp,
    /// Missed fire times older than this are never run (humantime, e.g. `6h`).
    #[serde(default = "default_max_age", with = "humantime_text")]
    pub max_age: Duration,
}

impl Default for CatchUpSpec {
    fn default() -> Self {
        CatchUpSpec {
            policy: CatchUp::default(),
            max_age: default_max_age(),
        }
    }
}

fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// What a fire launches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LaunchRepr", into = "LaunchRepr")]
pub enum Launch {
    /// Start a run of this run file (`launch: {run_file: waves/dr.yaml}`).
    RunFile {
        /// Path of the run file.
        path: PathBuf,
    },
    /// Start the next wave of `size` numbers from this run file
    /// (`launch: {next_wave: {run_file: waves/dr.yaml, size: 500}}`).
    NextWave {
        /// Path of the run file the waves come from.
        run_file: PathBuf,
        /// How many numbers per wave.
        size: usize,
    },
}

/// The written form: `run_file` takes the path directly, not `{path: …}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum LaunchRepr {
    RunFile(PathBuf),
    NextWave { run_file: PathBuf, size: usize },
}

impl From<LaunchRepr> for Launch {
    fn from(r: LaunchRepr) -> Self {
        match r {
            LaunchRepr::RunFile(path) => Launch::RunFile { path },
            LaunchRepr::NextWave { run_file, size } => Launch::NextWave { run_file, size },
        }
    }
}

impl From<Launch> for LaunchRepr {
    fn from(l: Launch) -> Self {
        match l {
            Launch::RunFile { path } => LaunchRepr::RunFile(path),
            Launch::NextWave { run_file, size } => LaunchRepr::NextWave { run_file, size },
        }
    }
}

/// A validated [`ScheduleSpec`] with its cron expression compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledSchedule {
    /// Unique name of the schedule.
    pub name: String,
    /// The compiled cron expression and time zone.
    pub schedule: CronSchedule,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Catch-up policy.
    pub catch_up: CatchUp,
    /// Oldest missed fire time that catch-up may still run.
    pub max_age: Duration,
    /// What each fire launches.
    pub launch: Launch,
}

impl ScheduleSpec {
    /// Check every field and compile the cron expression in its time zone.
    pub fn validate(&self) -> Result<CompiledSchedule, ScheduleError> {
        let spec_err = |reason: &str| ScheduleError::Spec {
            name: self.name.clone(),
            reason: reason.to_string(),
        };
        if self.name.trim().is_empty() {
            return Err(spec_err("name is empty"));
        }
        let schedule = CronSchedule::parse(&self.cron, &self.timezone)?;
        if self.catch_up.max_age.is_zero() {
            return Err(spec_err("catch_up.max_age must be longer than zero"));
        }
        match &self.launch {
            Launch::RunFile { path } if path.as_os_str().is_empty() => {
                return Err(spec_err("launch.run_file is empty"))
            }
            Launch::NextWave { run_file, .. } if run_file.as_os_str().is_empty() => {
                return Err(spec_err("launch.next_wave.run_file is empty"))
            }
            Launch::NextWave { size: 0, .. } => {
                return Err(spec_err("launch.next_wave.size must be at least 1"))
            }
            _ => {}
        }
        Ok(CompiledSchedule {
            name: self.name.clone(),
            schedule,
            overlap: self.overlap,
            catch_up: self.catch_up.policy,
            max_age: self.catch_up.max_age,
            launch: self.launch.clone(),
        })
    }
}

impl CompiledSchedule {
    /// [`missed_fires`] with this schedule's policy and `max_age`.
    pub fn missed_fires(&self, last_fired: Option<Timestamp>, now: Timestamp) -> Vec<Timestamp> {
        missed_fires(&self.schedule, last_fired, now, self.catch_up, self.max_age)
    }

    /// [`decide_overlap`] with this schedule's policy.
    pub fn decide_overlap(&self, previous_still_running: bool) -> OverlapDecision {
        decide_overlap(self.overlap, previous_still_running)
    }
}

/// Serde for a [`Duration`] written as humantime text (`24h`, `1h30m`).
mod humantime_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration("max_age", &text).map_err(serde::de::Error::custom)
    }
}
