//! The schedule as users write it (YAML/JSON), and its compiled form.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::window::parse_duration;
use super::{
    decide_overlap, missed_fires, CatchUp, CronSchedule, Overlap, OverlapDecision, ScheduleError,
};
use crate::clock::Timestamp;
use crate::spec::limits::{human_duration, MAX_SPAN, MAX_SUBJECTS};

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatchUpSpec {
    /// Which missed fire times to run.
    #[serde(default)]
    pub policy: CatchUp,
    /// Missed fire times older than this are never run (humantime, e.g. `6h`).
    #[serde(default = "default_max_age", with = "humantime_text")]
    #[schemars(with = "crate::spec::schema::DurationText")]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "LaunchRepr", into = "LaunchRepr")]
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

/// The written form. A map with one key rather than a serde enum, because
/// serde_yaml-family crates want `!run_file a.yaml` tags for enums, and users
/// write `{run_file: a.yaml}`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["run_file"]}, {"required": ["next_wave"]}]))]
struct LaunchRepr {
    /// Start a run of this run file (relative to the schedule file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PathBuf")]
    run_file: Option<PathBuf>,
    /// Start the next wave of `size` subjects of this run file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NextWaveRepr")]
    next_wave: Option<NextWaveRepr>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NextWaveRepr {
    /// The run file the waves come from (relative to the schedule file).
    run_file: PathBuf,
    /// How many subjects per wave.
    #[schemars(range(min = 1))]
    size: usize,
}

impl TryFrom<LaunchRepr> for Launch {
    type Error = String;

    fn try_from(r: LaunchRepr) -> Result<Self, String> {
        match (r.run_file, r.next_wave) {
            (Some(path), None) => Ok(Launch::RunFile { path }),
            (None, Some(NextWaveRepr { run_file, size })) => {
                Ok(Launch::NextWave { run_file, size })
            }
            _ => Err("launch needs exactly one of `run_file` or `next_wave`".to_string()),
        }
    }
}

impl From<Launch> for LaunchRepr {
    fn from(l: Launch) -> Self {
        match l {
            Launch::RunFile { path } => LaunchRepr {
                run_file: Some(path),
                next_wave: None,
            },
            Launch::NextWave { run_file, size } => LaunchRepr {
                run_file: None,
                next_wave: Some(NextWaveRepr { run_file, size }),
            },
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
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(spec_err(
                "name may contain only letters, digits, `-`, `_` and `.`",
            ));
        }
        let schedule = CronSchedule::parse(&self.cron, &self.timezone)?;
        if self.catch_up.max_age.is_zero() {
            return Err(spec_err("catch_up.max_age must be longer than zero"));
        }
        if self.catch_up.max_age > MAX_SPAN {
            return Err(spec_err(&format!(
                "catch_up.max_age must be at most {}",
                human_duration(MAX_SPAN)
            )));
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
            Launch::NextWave { size, .. } if *size > MAX_SUBJECTS => {
                return Err(spec_err(&format!(
                    "launch.next_wave.size must be at most {MAX_SUBJECTS} (a run's most subjects)"
                )))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::ts;

    fn yaml(text: &str) -> Result<ScheduleSpec, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_spec_takes_the_defaults() {
        let spec = yaml(
            "name: dr\ncron: \"0 22 * * MON-FRI\"\ntimezone: Europe/Berlin\n\
             launch: {run_file: waves/dr.yaml}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.overlap, Overlap::Skip);
        assert_eq!(
            spec.catch_up,
            CatchUpSpec {
                policy: CatchUp::Skip,
                max_age: Duration::from_secs(86_400)
            }
        );
        assert_eq!(
            spec.launch,
            Launch::RunFile {
                path: PathBuf::from("waves/dr.yaml")
            }
        );
        let compiled = spec.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(compiled.schedule.timezone(), "Europe/Berlin");
        assert_eq!(
            compiled.schedule.next_after(ts("2026-11-20T12:00:00Z")),
            Some(ts("2026-11-20T21:00:00Z"))
        );
    }

    #[test]
    fn full_spec_with_next_wave_and_policies() {
        let spec = yaml(
            "name: waves\ncron: \"30 2 * * SAT,SUN\"\ntimezone: America/New_York\n\
             overlap: queue\ncatch_up: {policy: once, max_age: 6h}\n\
             launch: {next_wave: {run_file: waves/all.yaml, size: 500}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = spec.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.overlap, Overlap::Queue);
        assert_eq!(c.catch_up, CatchUp::Once);
        assert_eq!(c.max_age, Duration::from_secs(6 * 3600));
        assert_eq!(
            c.launch,
            Launch::NextWave {
                run_file: PathBuf::from("waves/all.yaml"),
                size: 500
            }
        );
        assert_eq!(c.decide_overlap(true), OverlapDecision::Queue);
        // Sat 2026-11-21 02:30 EST = 07:30Z; back at 10:00Z, within 6h.
        assert_eq!(
            c.missed_fires(Some(ts("2026-11-20T00:00:00Z")), ts("2026-11-21T10:00:00Z")),
            [ts("2026-11-21T07:30:00Z")]
        );
    }

    #[test]
    fn spec_round_trips_through_yaml() {
        let spec = ScheduleSpec {
            name: "dr".into(),
            cron: "0 22 * * *".into(),
            timezone: "UTC".into(),
            overlap: Overlap::Allow,
            catch_up: CatchUpSpec {
                policy: CatchUp::All,
                max_age: Duration::from_secs(5400),
            },
            launch: Launch::NextWave {
                run_file: "w.yaml".into(),
                size: 10,
            },
        };
        let text = serde_yaml::to_string(&spec).unwrap_or_default();
        assert!(text.contains("max_age: 1h 30m"), "{text}");
        assert!(text.contains("next_wave:"), "{text}");
        assert_eq!(yaml(&text), Ok(spec));
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        let base = "name: dr\ncron: \"0 22 * * *\"\ntimezone: UTC\n";
        let e = yaml(&format!(
            "{base}launch: {{run_file: a.yaml}}\nwhen: never\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown field `when`"), "{e}");
        let e = yaml(&format!(
            "{base}launch: {{run_file: a.yaml}}\ncatch_up: {{policy: once, age: 1h}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown field `age`"), "{e}");
        let e = yaml(&format!(
            "{base}launch: {{next_wave: {{run_file: a.yaml, size: 5, sise: 6}}}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown field `sise`"), "{e}");
        let e = yaml(&format!("{base}launch: {{run_fil: a.yaml}}\n")).unwrap_err();
        assert!(e.contains("unknown field `run_fil`"), "{e}");
        let e = yaml(&format!("{base}launch: {{}}\n")).unwrap_err();
        assert!(
            e.contains("exactly one of `run_file` or `next_wave`"),
            "{e}"
        );
        let both = "launch: {run_file: a.yaml, next_wave: {run_file: b.yaml, size: 1}}";
        let e = yaml(&format!("{base}{both}\n")).unwrap_err();
        assert!(e.contains("exactly one of"), "{e}");
        let e = yaml(&format!(
            "{base}launch: {{run_file: a.yaml}}\noverlap: sometimes\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown variant `sometimes`"), "{e}");
        let e = yaml(&format!(
            "{base}launch: {{run_file: a.yaml}}\ncatch_up: {{max_age: \"10\"}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("max_age `10`: time unit needed"), "{e}");
    }

    #[test]
    fn validate_reports_bad_cron_zone_and_fields() {
        let spec = |cron: &str, tz: &str, launch: Launch| ScheduleSpec {
            name: "dr".into(),
            cron: cron.into(),
            timezone: tz.into(),
            overlap: Overlap::Skip,
            catch_up: CatchUpSpec::default(),
            launch,
        };
        let ok = Launch::RunFile {
            path: "a.yaml".into(),
        };
        let e = spec("0 22 * * FOO", "UTC", ok.clone())
            .validate()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field 5 (day of week) `FOO` at column 10: unknown day name"
        );
        let e = spec("0 22 * * *", "Berlin", ok.clone())
            .validate()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e, ScheduleError::UnknownTimezone("Berlin".into()));
        let zero = Launch::NextWave {
            run_file: "a.yaml".into(),
            size: 0,
        };
        let e = spec("0 22 * * *", "UTC", zero)
            .validate()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "schedule `dr`: launch.next_wave.size must be at least 1"
        );
        let mut unnamed = spec("0 22 * * *", "UTC", ok);
        unnamed.name = " ".into();
        assert!(unnamed
            .validate()
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("name is empty"));
    }
}
