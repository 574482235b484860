//! The workflow model: what a `workflows/*.yaml` file deserializes into.
//!
//! Field-level rules (types, durations, unknown fields) are enforced by serde here;
//! cross-field rules (references, operation arguments) by `validate`.

use std::fmt;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::expr::Expr;
use super::template::Template;
use crate::backend::{ErrorKind, OperationKind};

/// A workflow definition: the steps of one migration for one subject.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Unique name, e.g. `direct-routing-to-operator-connect`.
    pub name: String,
    /// Author-maintained version number.
    pub version: u32,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// Which input identifies the subject (shown in status, used by `show`).
    pub subject: String,
    /// Typed inputs, in declaration order.
    pub inputs: IndexMap<String, InputSpec>,
    /// What happens when an instance fails after changing the tenant: `stop`
    /// (default) or `rollback` (run the `compensate` actions of the steps done,
    /// newest first). A run file may override it.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Allow waits to poll every 100 ms and to time out after 1 s (without it:
    /// 1 s and 1 min). For systems that answer in under a second (the
    /// simulator, benchmarks, an on-premises system); a run on a real tenant warns.
    #[serde(default)]
    pub fast_polls: bool,
    /// Ordered steps.
    pub steps: Vec<Step>,
    /// Failure policies of chained (`then:`) workflows, by segment (set by `compose`).
    #[serde(skip)]
    pub then_on_failure: Vec<OnFailure>,
    /// What the workflow's expressions read of earlier steps, worked out on first use.
    #[serde(skip)]
    pub reads: std::sync::OnceLock<StepReads>,
}

/// What the expressions and templates of a workflow read of its steps' data
/// (`steps.<id>.output…`, `steps.<id>.observed…`). The engine keeps only that in
/// a snapshot, which every poll rewrites; the rest goes to the history once.
#[derive(Clone, Debug, Default)]
pub struct StepReads {
    /// Some path is computed (`steps[x]`, or `steps` itself): anything may be read.
    pub any: bool,
    /// Steps whose `observed` is read.
    pub observed: BTreeSet<String>,
    /// Steps whose whole output (or whole step data) is read.
    pub whole_output: BTreeSet<String>,
    /// Top-level output fields read, per step.
    pub output_fields: BTreeMap<String, BTreeSet<String>>,
}

/// Failure policy of a workflow or run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The instance stops in `failed`.
    #[default]
    Stop,
    /// Undo what was done (compensations, newest first), then `rolled_back`.
    Rollback,
}

impl Workflow {
    /// The failure policy of the workflow that step `idx` comes from.
    pub fn on_failure_at(&self, idx: usize) -> OnFailure {
        if let Some(p) = self.steps.get(idx).and_then(|s| s.on_failure) {
            return p;
        }
        match self.steps.get(idx).map_or(0, |s| s.segment) {
            0 => self.on_failure,
            seg => self
                .then_on_failure
                .get(seg - 1)
                .copied()
                .unwrap_or(OnFailure::Stop),
        }
    }

    /// Index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// Whether an expression or template of this workflow may read what step
    /// `id`'s wait observed (`steps.<id>.observed`, `steps.<id>`, or `steps`
    /// with a computed index, which could be any step).
    pub fn reads_observed(&self, id: &str) -> bool {
        let r = self.step_reads();
        r.any || r.observed.contains(id)
    }

    /// Split an action's output into what the workflow reads of it (kept in the
    /// snapshot) and, when that is less than all of it, the whole output (for
    /// the history). Only objects are trimmed, to their top-level fields read.
    pub fn trim_output(&self, id: &str, output: Value) -> (Value, Option<Value>) {
        let r = self.step_reads();
        if r.any || r.whole_output.contains(id) {
            return (output, None);
        }
        let Value::Object(map) = &output else {
            return (output, None);
        };
        let fields = r.output_fields.get(id);
        let kept: serde_json::Map<String, Value> = map
            .iter()
            .filter(|(k, _)| fields.is_some_and(|f| f.contains(*k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kept.len() == map.len() {
            return (output, None);
        }
        (Value::Object(kept), Some(output))
    }

    /// What the workflow reads of its steps' data.
    pub fn step_reads(&self) -> &StepReads {
        self.reads.get_or_init(|| self.find_step_reads())
    }

    fn find_step_reads(&self) -> StepReads {
        let mut exprs: Vec<&Expr> = Vec::new();
        let mut templates: Vec<&Template> = Vec::new();
        for st in &self.steps {
            exprs.extend(st.when.iter());
            if let Some(c) = &st.check {
                exprs.push(&c.require);
                templates.push(&c.message);
            }
            if let Some(m) = &st.manual {
                templates.push(&m.instructions);
            }
            if let Some(a) = &st.action {
                templates.extend(a.args.values());
            }
            let waits = st
                .wait
                .iter()
                .chain(st.compensate.iter().filter_map(|c| c.wait.as_ref()));
            for w in waits {
                exprs.push(&w.until);
                templates.extend(w.observe.args.values());
            }
            if let Some(c) = &st.compensate {
                templates.extend(c.args.values());
            }
        }
        exprs.extend(templates.iter().flat_map(|t| t.exprs()));
        let mut r = StepReads::default();
        for e in exprs {
            for path in e.paths() {
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["steps", id, "observed", ..] => {
                        r.observed.insert(id.to_string());
                    }
                    ["steps", id, "output", field, ..] => {
                        r.output_fields
                            .entry(id.to_string())
                            .or_default()
                            .insert(field.to_string());
                    }
                    ["steps", id, "output"] => {
                        r.whole_output.insert(id.to_string());
                    }
                    ["steps", _, _, ..] => {}
                    ["steps", id] => {
                        r.observed.insert(id.to_string());
                        r.whole_output.insert(id.to_string());
                    }
                    ["steps"] => r.any = true,
                    _ => {}
                }
            }
        }
        r
    }
}

/// Declared type of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// A user principal name (`user@domain`).
    Upn,
    /// An E.164 number (`+` and 8–15 digits).
    E164,
    /// Any text.
    String,
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputType::Upn => "upn",
            InputType::E164 => "e164",
            InputType::String => "string",
        })
    }
}

/// One input of a workflow.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: InputType,
    /// May be left empty (then `null` in conditions).
    #[serde(default)]
    pub optional: bool,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// The only values accepted (e.g. an address mode): anything else is
    /// refused when the run file loads, and a condition comparing the input
    /// with any other text is refused when the workflow loads.
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

/// One step: optional condition, gate, action and wait, in that order.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique id within the workflow (`[a-z0-9_-]`).
    pub id: String,
    /// What the step does, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Skip the step when this is false.
    #[serde(default)]
    pub when: Option<Expr>,
    /// A precondition: when false the instance is refused with `message`.
    #[serde(default)]
    pub check: Option<CheckSpec>,
    /// Manual approval or named signal required before the step acts.
    #[serde(default)]
    pub gate: Option<GateSpec>,
    /// Start the step only inside the run's porting window (steps that take a
    /// number out of service). A step already started may finish after the window.
    #[serde(default)]
    pub window: bool,
    /// This step's verification (its wait, or its completion without one) is
    /// the proof that service is back after an outage-causing step.
    #[serde(default)]
    pub restores_service: bool,
    /// A task a person does (in the admin center); the instance waits for the
    /// signal `done`. Also what an action becomes on a backend that cannot automate it.
    #[serde(default)]
    pub manual: Option<ManualSpec>,
    /// The backend operation to run.
    #[serde(default)]
    pub action: Option<ActionSpec>,
    /// Poll until the change is visible.
    #[serde(default)]
    pub wait: Option<WaitSpec>,
    /// Retry policy for the action.
    #[serde(default)]
    pub retry: RetrySpec,
    /// How to undo this step's action during a rollback.
    #[serde(default)]
    pub compensate: Option<CompensateSpec>,
    /// Failure policy from this step on, overriding the workflow's (e.g. `stop`
    /// once the number is at the operator and going back is a new port).
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// Which workflow of a chain the step comes from (0 = the main one; set by `compose`).
    #[serde(skip)]
    pub segment: usize,
}

impl Step {
    /// The operations the step may call: its action, its wait's observation,
    /// its undo and the undo's observation, in that order.
    pub fn operations(&self) -> Vec<OperationKind> {
        let mut ops = Vec::new();
        ops.extend(self.action.as_ref().map(|a| a.op));
        ops.extend(self.wait.as_ref().map(|w| w.observe.op));
        if let Some(c) = &self.compensate {
            ops.push(c.op);
            ops.extend(c.wait.as_ref().map(|w| w.observe.op));
        }
        ops
    }
}

/// A gate: a manual approval (`approval`) or a named signal (`signal`).
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// What the approver confirms (`portflow approve`).
    #[serde(default)]
    pub approval: Option<String>,
    /// Name of the signal that opens the gate (`portflow signal … <name>`).
    #[serde(default)]
    pub signal: Option<String>,
    /// What the signal means, for people.
    #[serde(default)]
    pub description: Option<String>,
}

impl GateSpec {
    /// Text shown while an instance waits at this gate.
    pub fn message(&self) -> String {
        match (&self.approval, &self.signal) {
            (Some(a), _) => a.clone(),
            (None, Some(s)) => match &self.description {
                Some(d) => format!("waiting for signal `{s}`: {d}"),
                None => format!("waiting for signal `{s}`"),
            },
            (None, None) => "waiting for approval".into(),
        }
    }
}

/// A precondition checked when the step is reached.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Must be true to go on (over `inputs`, earlier `steps`).
    pub require: Expr,
    /// Why the subject is refused when it is false.
    pub message: Template,
}

/// A task done by a person; the instance waits for the signal `done`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualSpec {
    /// What to do, step by step (templated: `${inputs.user}`).
    pub instructions: Template,
}

/// The undo of a step: an action, optionally verified by a wait.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompensateSpec {
    /// Operation name from the catalog.
    pub op: OperationKind,
    /// Arguments; values are templates.
    #[serde(default)]
    pub args: IndexMap<String, Template>,
    /// Poll until the undo is visible.
    #[serde(default)]
    pub wait: Option<WaitSpec>,
    /// Retry policy for the undo action.
    #[serde(default)]
    pub retry: RetrySpec,
}

impl CompensateSpec {
    /// The undo as an action spec.
    pub fn action(&self) -> ActionSpec {
        ActionSpec {
            op: self.op,
            args: self.args.clone(),
        }
    }
}

/// A templated backend operation.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Operation name from the catalog.
    pub op: OperationKind,
    /// Arguments; values are templates.
    #[serde(default)]
    pub args: IndexMap<String, Template>,
}

/// Poll an observation until a condition holds.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitSpec {
    /// The observation to poll (`get_user`, `get_number`).
    pub observe: ActionSpec,
    /// Condition over `obs` (plus `inputs`, `steps`).
    pub until: Expr,
    /// Typical time until the change is visible; polls grow toward it.
    #[serde(default = "default_expected", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub expected: Duration,
    /// Give up after this long.
    #[serde(deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub timeout: Duration,
    /// Poll intervals.
    #[serde(default)]
    pub poll: PollSpec,
    /// A signal that also satisfies the wait (e.g. the engineer confirms the
    /// port completed); its data becomes the observation.
    #[serde(default)]
    pub signal: Option<String>,
    /// What happens on timeout.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// The top-level fields of `obs` that `until` reads (`None`: all of it),
    /// found once: [`WaitSpec::proof`] runs on every poll.
    #[serde(skip)]
    #[schemars(skip)]
    proof_fields: std::sync::OnceLock<Option<BTreeSet<String>>>,
}

fn default_expected() -> Duration {
    Duration::from_secs(600)
}

impl WaitSpec {
    /// What of an observation the history keeps when the wait is met: the
    /// top-level fields `until` reads (the proof), or all of it when `until`
    /// reads `obs` whole or by a computed key. A full `get_user` is ~600 bytes
    /// per wait; the proof is a few dozen.
    pub fn proof(&self, obs: Value) -> Value {
        let Value::Object(mut map) = obs else {
            return obs;
        };
        let Some(fields) = self.proof_fields.get_or_init(|| self.read_fields()) else {
            return Value::Object(map);
        };
        map.retain(|k, _| fields.contains(k));
        Value::Object(map)
    }

    fn read_fields(&self) -> Option<BTreeSet<String>> {
        let mut fields = BTreeSet::new();
        for path in self.until.paths() {
            match path.as_slice() {
                [root, field, ..] if root == "obs" => {
                    fields.insert(field.clone());
                }
                [root] if root == "obs" => return None,
                _ => {}
            }
        }
        Some(fields)
    }
}

/// Poll interval policy: start at `initial`, multiply by `factor`, never above `max`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// First interval.
    #[serde(default = "default_poll_initial", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub initial: Duration,
    /// Largest interval.
    #[serde(default = "default_poll_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub max: Duration,
    /// Growth factor (≥ 1).
    #[serde(default = "default_factor")]
    pub factor: f64,
}

impl Default for PollSpec {
    fn default() -> Self {
        PollSpec {
            initial: default_poll_initial(),
            max: default_poll_max(),
            factor: default_factor(),
        }
    }
}

fn default_poll_initial() -> Duration {
    Duration::from_secs(20)
}
fn default_poll_max() -> Duration {
    Duration::from_secs(300)
}
fn default_factor() -> f64 {
    2.0
}

/// What a wait does when it times out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The instance fails.
    #[default]
    Fail,
    /// Go on with the next step.
    Continue,
    /// Undo the steps done so far (compensations), whatever the workflow's `on_failure`.
    Rollback,
}

/// Retry policy for an action.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Total attempts including the first (≥ 1).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First backoff.
    #[serde(default = "default_backoff_initial", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub initial: Duration,
    /// Largest backoff.
    #[serde(default = "default_backoff_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub max: Duration,
    /// Which error kinds are retried.
    #[serde(default = "default_retry_on")]
    pub on: Vec<ErrorKind>,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: default_attempts(),
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            on: default_retry_on(),
        }
    }
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(600)
}
fn default_retry_on() -> Vec<ErrorKind> {
    vec![
        ErrorKind::Throttled,
        ErrorKind::Transient,
        ErrorKind::NotFound,
    ]
}

/// Moved to [`crate::clock`]; re-exported for the spec's own fields.
pub use crate::clock::{duration, parse_duration};

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Expr::parse(&s).map_err(|e| {
            de::Error::custom(format!(
                "in condition {s:?} at character {}: {e}",
                e.offset + 1
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Scalars other than strings (true, 42) are templates of their text.
        let v = serde_yaml::Value::deserialize(d)?;
        let s = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Null => "${null}".to_string(),
            _ => {
                return Err(de::Error::custom(
                    "an argument must be a single value, not a list or a mapping",
                ))
            }
        };
        Template::parse(&s).map_err(|e| {
            de::Error::custom(format!(
                "in template {s:?} at character {}: {e}",
                e.offset + 1
            ))
        })
    }
}
