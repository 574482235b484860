//! The run file model: which workflow, which backend, which subjects, how fast.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::backend::sim::SimConfig;

/// A run file (`examples/*.yaml`) as written by the user.
#[derive(Clone, Debug, Deserialize)]
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
    /// Gate step ids approved up front for every subject.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// Virtual seconds per real second (simulator only; 1 for real tenants).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// Override of the workflow's failure policy (`stop` or `rollback`).
    #[serde(default)]
    pub on_failure: Option<crate::spec::model::OnFailure>,
    /// Workflows whose steps follow the main workflow's for every subject
    /// (e.g. `[send-conferencing-info]`); their inputs come from the same subject.
    #[serde(default)]
    pub then: Vec<String>,
}

fn default_concurrency() -> usize {
    20
}
fn default_time_scale() -> f64 {
    1.0
}

/// Which backend a run talks to.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The simulated tenant.
    Sim(SimConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::Sim(SimConfig::default())
    }
}

/// Where subjects come from: an inline list of input maps, or a CSV file whose
/// header names the workflow's inputs.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SubjectsSpec {
    /// `subjects: {csv: users.csv}` (path relative to the run file).
    Csv {
        /// CSV path.
        csv: PathBuf,
    },
    /// `subjects: [{user: a@contoso.com, number: "+1…"}, …]`.
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
