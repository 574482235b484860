//! Schedule files: one schedule, or `schedules:` with a list of them.
//!
//! ```yaml
//! schedules:
//!   - name: nightly-dr
//!     cron: "0 22 * * MON-FRI"
//!     timezone: Europe/Berlin
//!     launch: {next_wave: {run_file: dr-waves.yaml, size: 500}}
//! ```
//!
//! Every problem is reported as `file:line:col`; run file paths are resolved
//! against the schedule file's directory and each run file must load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::diag::{Diagnostic, SpecError};
use super::limits::MAX_SCHEDULES;
use super::load::{diag, fail, position_map, read, serde_diag};
use super::locate::{join_index, join_key, PosMap, Style};
use crate::schedule::{Launch, ScheduleError, ScheduleSpec};

/// A schedule file with a list of schedules.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleFile {
    /// The schedules, each with a unique name.
    schedules: Vec<ScheduleSpec>,
}

/// The two forms of a schedule file, for its schema: `load_schedules` tells
/// them apart by the top-level key `schedules`.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum ScheduleFileForms {
    /// `schedules:` with a list of them.
    List(ScheduleFile),
    /// One schedule.
    One(ScheduleSpec),
}

/// Load and check a schedule file. Relative run file paths come back absolute.
pub fn load_schedules(
    path: &Path,
    search_dirs: &[PathBuf],
) -> Result<Vec<ScheduleSpec>, SpecError> {
    let text = read(path)?;
    let origin = path.display().to_string();
    let (body, map, mut diags) = position_map(&text, &origin)?;
    let listed = map.top_keys.iter().any(|k| k == "schedules");
    let parsed: Result<Vec<ScheduleSpec>, serde_yaml::Error> = if listed {
        serde_yaml::from_str::<ScheduleFile>(body).map(|f| f.schedules)
    } else {
        serde_yaml::from_str::<ScheduleSpec>(body).map(|s| vec![s])
    };
    let mut specs = match parsed {
        Ok(s) => s,
        Err(e) => {
            diags.extend(serde_diag(&e, &map, &origin));
            return Err(fail(diags, &origin));
        }
    };
    if specs.is_empty() {
        diags.push(diag(
            &origin,
            map.at("schedules"),
            "no schedules in the list",
        ));
    }
    if specs.len() > MAX_SCHEDULES {
        // Each would load its run file: refuse before loading any.
        diags.push(diag(
            &origin,
            map.at("schedules"),
            format!(
                "{} schedules in one file; at most {MAX_SCHEDULES}",
                specs.len()
            ),
        ));
        return Err(fail(diags, &origin));
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let mut names: Vec<String> = Vec::new();
    let mut checked: HashMap<PathBuf, Option<String>> = HashMap::new();
    for (i, spec) in specs.iter_mut().enumerate() {
        let at = if listed {
            join_index("schedules", i)
        } else {
            ".".to_string()
        };
        let field = |k: &str| join_key(&at, k);
        if names.contains(&spec.name) {
            diags.push(diag(
                &origin,
                map.at(&field("name")),
                format!("schedule name {:?} is used twice", spec.name),
            ));
        }
        names.push(spec.name.clone());
        if let Err(e) = spec.validate() {
            diags.push(schedule_diag(&e, &map, &origin, &field));
            continue;
        }
        let (file, key) = match &mut spec.launch {
            Launch::RunFile { path } => (path, field("launch.run_file")),
            Launch::NextWave { run_file, .. } => (run_file, field("launch.next_wave.run_file")),
        };
        if file.is_relative() {
            *file = base.join(&*file);
        }
        // Schedules often share a run file (and its CSV list): load each once.
        let loaded = checked.entry(file.clone()).or_insert_with(|| {
            super::load_run(file, search_dirs).err().map(|e| {
                e.diagnostics
                    .first()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| e.to_string())
            })
        });
        if let Some(first) = loaded {
            diags.push(diag(
                &origin,
                map.at(&key),
                format!("run file {} does not load: {first}", file.display()),
            ));
        }
    }
    SpecError::check(diags)?;
    Ok(specs)
}

/// Where in the file a schedule error belongs. Cron field errors point at the
/// field inside the expression.
fn schedule_diag(
    e: &ScheduleError,
    map: &PosMap,
    origin: &str,
    field: &dyn Fn(&str) -> String,
) -> Diagnostic {
    let key = match e {
        ScheduleError::UnknownTimezone(_) => field("timezone"),
        ScheduleError::Duration { .. } => field("catch_up.max_age"),
        ScheduleError::Spec { reason, .. } if reason.starts_with("name") => field("name"),
        ScheduleError::Spec { reason, .. } if reason.contains("max_age") => {
            field("catch_up.max_age")
        }
        ScheduleError::Spec { .. } => field("launch"),
        _ => field("cron"),
    };
    let mut pos = map.at(&key);
    if let ScheduleError::Field { column, .. } = e {
        // Plain scalars start at the value; quoted ones one character later.
        let quote = usize::from(matches!(
            map.style(&key),
            Some(Style::SingleQuoted | Style::DoubleQuoted)
        ));
        pos.col += column - 1 + quote;
    }
    diag(origin, pos, e.to_string())
}
