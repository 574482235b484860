//! The run record: one launch of one workflow over many subjects, with the
//! workflow text pinned so editing the YAML never changes runs in flight.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clock::{ScaledClock, Timestamp};

/// The workflow a run uses, pinned at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowPin {
    /// Workflow name.
    pub name: String,
    /// Its declared version.
    pub version: u32,
    /// SHA-256 of its text.
    pub hash: String,
    /// Where it came from (path or `builtin:<name>`).
    pub origin: String,
    /// The full text.
    pub text: String,
}

/// A stored run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (`YYYYMMDD-HHMMSS-xxxx`).
    pub id: String,
    /// Label from the run file.
    #[serde(default)]
    pub label: Option<String>,
    /// When it was created (engine clock).
    pub created_at: Timestamp,
    /// The pinned workflow.
    pub workflow: WorkflowPin,
    /// Workflows whose steps follow (`then:` in the run file), pinned likewise.
    #[serde(default)]
    pub then: Vec<WorkflowPin>,
    /// Path of the run file it was launched from.
    pub run_origin: String,
    /// Text of the run file (settings and backend are re-read from it on resume).
    pub run_text: String,
    /// Directory of the run file (relative paths in it are resolved from here).
    pub base_dir: PathBuf,
    /// Virtual clock anchor for simulated runs (`None` = real time).
    #[serde(default)]
    pub clock: Option<ScaledClock>,
    /// Number of subjects.
    pub subjects: u32,
    /// Set once every instance is terminal.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// The circuit breaker's durable state (`stop_after_failures`).
    #[serde(default, skip_serializing_if = "Breaker::is_default")]
    pub breaker: Breaker,
}

/// A run's circuit breaker. Failures are counted from the instances; what is
/// stored is when it tripped and how many failures each `--continue` accepted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    /// Failures already accepted by `resume --continue` (they no longer count).
    #[serde(default)]
    pub accepted: u32,
    /// Set while the breaker is open: new outage steps are held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tripped: Option<Trip>,
    /// Every `--continue`, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continued: Vec<Continued>,
}

impl Breaker {
    fn is_default(&self) -> bool {
        *self == Breaker::default()
    }
}

/// When and why the breaker opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// When (engine clock).
    pub at: Timestamp,
    /// Failures counted then (since the last `--continue`).
    pub failures: u32,
    /// The threshold they reached.
    pub threshold: u32,
}

/// One `resume --continue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Continued {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: String,
    /// Failures accepted in total from then on.
    pub accepted: u32,
}

impl RunRecord {
    /// When the run finished, in real time: a time-scaled rehearsal stores its
    /// end on its virtual clock.
    pub fn finished_real(&self) -> Option<Timestamp> {
        let f = self.finished_at?;
        Some(self.clock.map_or(f, |c| c.real_of(f)))
    }
}

impl WorkflowPin {
    /// Pin a loaded workflow.
    pub fn of(w: &crate::spec::LoadedWorkflow) -> WorkflowPin {
        WorkflowPin {
            name: w.workflow.name.clone(),
            version: w.workflow.version,
            hash: w.hash.clone(),
            origin: w.origin.clone(),
            text: w.text.clone(),
        }
    }
}

/// A new run id from the current instant and a few random-ish bits.
pub fn new_run_id(now: Timestamp, salt: u64) -> String {
    let s = now.rfc3339(); // 2026-11-23T10:15:00.123Z
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let date = digits.get(0..8).unwrap_or("00000000");
    let time = digits.get(8..14).unwrap_or("000000");
    let mut x = (now.0 as u64) ^ salt.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{date}-{time}-{:04x}", x & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_sortable_and_fixed_width() {
        let a = new_run_id(Timestamp(1_795_000_000_000), 1);
        let b = new_run_id(Timestamp(1_795_000_100_000), 1);
        assert_eq!(a.len(), 20, "{a}");
        assert!(a < b);
        assert!(!a.contains('/'));
    }
}
