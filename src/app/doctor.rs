//! `doctor`: can this run file's workflow run against its backend? Signs in,
//! reads each read endpoint once, and says per operation the workflow uses:
//! available, missing permission (which one to grant), needs another backend,
//! or manual. Read-only: nothing is written anywhere, not even the state
//! directory.

use serde::Serialize;
use serde_json::json;

use super::{App, Error, Result};
use crate::backend::{BackendConfig, OperationKind};
use crate::report::exit;
use crate::report::table::Table;
use crate::spec::model::Workflow;
use crate::spec::{compose, LoadedRun};

/// One operation's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct OpCheck {
    /// Operation name.
    pub op: &'static str,
    /// `available`, `missing_permission`, `needs_backend` (on every
    /// subject's path), `conditional` (needs another backend, on some paths
    /// only: `plan` blocks those subjects), `manual` or `unknown`.
    pub status: &'static str,
    /// What to do about it, or what was checked.
    pub detail: String,
}

impl OpCheck {
    fn runnable(&self) -> bool {
        matches!(self.status, "available" | "manual" | "conditional")
    }
}

/// Whether the run's subjects reach an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A step without a condition uses it.
    Always,
    /// Only steps whose condition depends on what is read from the tenant
    /// (step id, condition): `plan` tells which subjects reach them.
    Conditional(String, String),
}

/// The operations `wf` uses (actions, waits, undos) for `loaded`'s subjects,
/// in order of first use. Steps whose condition reads only inputs and is
/// false for every subject are left out.
pub fn workflow_ops(wf: &Workflow, loaded: &LoadedRun) -> Vec<(OperationKind, Reach)> {
    let mut ops: Vec<(OperationKind, Reach)> = Vec::new();
    for step in &wf.steps {
        let reach = match &step.when {
            None => Reach::Always,
            Some(cond) => {
                let inputs_only = cond
                    .paths()
                    .iter()
                    .all(|p| matches!(p.first().map(String::as_str), Some("inputs" | "subject")));
                if inputs_only
                    && !loaded
                        .subjects
                        .iter()
                        .any(|s| cond.eval_bool(&inputs_context(wf, s)).unwrap_or(true))
                {
                    continue;
                }
                if inputs_only {
                    Reach::Always
                } else {
                    Reach::Conditional(step.id.clone(), cond.source().to_string())
                }
            }
        };
        for k in step.operations() {
            match ops.iter_mut().find(|(o, _)| *o == k) {
                Some((_, r)) if reach == Reach::Always => *r = Reach::Always,
                Some(_) => {}
                None => ops.push((k, reach.clone())),
            }
        }
    }
    ops
}

/// The expression context of a subject before anything is read.
fn inputs_context(wf: &Workflow, s: &crate::spec::runfile::Subject) -> serde_json::Value {
    let inputs: serde_json::Map<String, serde_json::Value> = wf
        .inputs
        .keys()
        .map(|k| {
            (
                k.clone(),
                s.inputs
                    .get(k)
                    .map_or(serde_json::Value::Null, |v| json!(v)),
            )
        })
        .collect();
    let subject = s.inputs.get(&wf.subject).cloned().unwrap_or_default();
    json!({"inputs": inputs, "steps": {}, "subject": subject, "obs": null})
}

fn manual(kind: OperationKind) -> OpCheck {
    let info = kind.info();
    let detail = if info.observation {
        // Nothing to do by hand: a wait polling it cannot see the change.
        format!(
            "cannot be read through an API ({}): a wait that polls it ends only by its signal \
             or its timeout",
            info.microsoft
        )
    } else {
        format!(
            "a person does it, then `portflow signal <run> <subject> done`: {}",
            info.manual.unwrap_or(info.microsoft)
        )
    };
    OpCheck {
        op: info.name,
        status: "manual",
        detail,
    }
}

/// `doctor` of a loaded run file: the text (or JSON) and the exit code (0
/// only when every operation is available or manual).
pub async fn doctor(app: &App, loaded: &LoadedRun) -> Result<(String, u8)> {
    let then: Vec<Workflow> = loaded.then.iter().map(|w| w.workflow.clone()).collect();
    let wf = compose(&loaded.workflow.workflow, &then);
    let ops = workflow_ops(&wf, loaded);
    let (backend, signin, checks) = match &loaded.file.backend {
        BackendConfig::Sim(cfg) => {
            let checks = ops
                .iter()
                .map(|(k, _)| {
                    if cfg.manual.contains(k) {
                        manual(*k)
                    } else {
                        OpCheck {
                            op: k.info().name,
                            status: "available",
                            detail: "the simulator performs every operation".into(),
                        }
                    }
                })
                .collect();
            (
                "simulated tenant".to_string(),
                "no sign-in (simulator)".to_string(),
                checks,
            )
        }
        BackendConfig::Microsoft(cfg) => microsoft(cfg, loaded, &ops).await?,
    };
    let ok = checks.iter().all(OpCheck::runnable);
    let code = if ok { exit::OK } else { exit::FAILED };
    if app.json {
        return Ok((
            super::json_text(&json!({
                "run_file": loaded.origin,
                "workflow": wf.name,
                "backend": backend,
                "sign_in": signin,
                "operations": checks,
                "runnable": ok,
            })),
            code,
        ));
    }
    let mut t = Table::new(["operation", "status", "detail"]);
    for c in &checks {
        t.row([
            c.op.to_string(),
            c.status.replace('_', " "),
            c.detail.clone(),
        ]);
    }
    let verdict = if ok {
        format!("{}: the workflow can run on this backend", loaded.origin)
    } else {
        let n = checks.iter().filter(|c| !c.runnable()).count();
        format!(
            "{}: the workflow cannot run yet: {n} operation(s) above need attention",
            loaded.origin
        )
    };
    Ok((
        format!(
            "backend: {backend}\nsign-in: {signin}\n{}{verdict}\n",
            t.render()
        ),
        code,
    ))
}

#[cfg(feature = "graph")]
async fn microsoft(
    cfg: &crate::backend::config::MicrosoftConfig,
    loaded: &LoadedRun,
    ops: &[(OperationKind, Reach)],
) -> Result<(String, String, Vec<OpCheck>)> {
    use crate::backend::graph::permissions::{self, Granted};
    use crate::backend::graph::tenant::AUTOMATED;
    let backend = format!("Microsoft tenant {} through Graph", cfg.tenant_id);
    let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
    let tenant = crate::backend::graph::open::open(cfg, clock).map_err(|e| {
        Error::input(format!("backend: {e}"))
            .hint("check the run file's backend: block and that the credential file is readable")
    })?;
    // The first subject's user and number are read once.
    let first = loaded.subjects.first();
    let input = |name: &str| first.and_then(|s| s.inputs.get(name)).map(String::as_str);
    let checked = match permissions::check(tenant.client(), input("user"), input("number")).await {
        Ok(c) => c,
        Err(e) => {
            let checks = ops
                .iter()
                .map(|(k, _)| OpCheck {
                    op: k.info().name,
                    status: "unknown",
                    detail: "not checked: no token".into(),
                })
                .collect();
            return Ok((backend, format!("FAILED: {e}"), checks));
        }
    };
    let signin = match &checked.roles {
        Some(r) => format!(
            "ok (app-only token for {}; {} application permission(s) granted)",
            cfg.client_id,
            r.len()
        ),
        None => format!(
            "ok (app-only token for {}; it does not list its permissions)",
            cfg.client_id
        ),
    };
    let mut checks = Vec::new();
    for (k, reach) in ops {
        let info = k.info();
        if !AUTOMATED.contains(k) {
            checks.push(match (info.manual, info.cmdlet, reach) {
                (None, Some(cmdlet), Reach::Always) => OpCheck {
                    op: info.name,
                    status: "needs_backend",
                    detail: format!(
                        "not available on Microsoft Graph: needs the PowerShell backend ({cmdlet})"
                    ),
                },
                (None, Some(cmdlet), Reach::Conditional(step, cond)) => OpCheck {
                    op: info.name,
                    status: "conditional",
                    detail: format!(
                        "needs the PowerShell backend ({cmdlet}), only for subjects that reach \
                         step {step} (when `{cond}`): `portflow plan` blocks them"
                    ),
                },
                _ => manual(*k),
            });
            continue;
        }
        if *k == OperationKind::GrantVoiceRoutingPolicy {
            if let Some(why) = &checked.policy_type_refused {
                checks.push(OpCheck {
                    op: info.name,
                    status: if matches!(reach, Reach::Always) {
                        "needs_backend"
                    } else {
                        "conditional"
                    },
                    detail: format!(
                        "this tenant's policy assignment API refuses voice routing policies \
                         ({why}): needs the PowerShell backend ({})",
                        info.cmdlet.unwrap_or(info.microsoft)
                    ),
                });
                continue;
            }
        }
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        for need in permissions::needs(*k) {
            match checked.granted(need) {
                Granted::Yes => {}
                Granted::No => missing.push(need),
                Granted::Unknown(why) => unknown.push(format!("{}: {why}", need.request)),
            }
        }
        checks.push(if let Some(need) = missing.first() {
            OpCheck {
                op: info.name,
                status: "missing_permission",
                detail: format!(
                    "grant the application permission {} (admin consent) for {}{}",
                    need.any_of.first().copied().unwrap_or("?"),
                    need.request,
                    if missing.len() > 1 {
                        format!(", and {} more", missing.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            }
        } else if !unknown.is_empty() {
            OpCheck {
                op: info.name,
                status: "unknown",
                detail: unknown.join("; "),
            }
        } else {
            OpCheck {
                op: info.name,
                status: "available",
                detail: info.graph.unwrap_or("").to_string(),
            }
        });
    }
    Ok((backend, signin, checks))
}

#[cfg(not(feature = "graph"))]
async fn microsoft(
    _cfg: &crate::backend::config::MicrosoftConfig,
    _loaded: &LoadedRun,
    _ops: &[(OperationKind, Reach)],
) -> Result<(String, String, Vec<OpCheck>)> {
    Err(Error::input(
        "kind: microsoft: this portflow was built without the `graph` feature",
    ))
}
