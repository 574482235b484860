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
    use crate::backend::powershell_config::RouteChoice;
    let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
    let tenant = crate::backend::microsoft::open(cfg, clock).map_err(|e| {
        Error::input(format!("backend: {e}"))
            .hint("check the run file's backend: block and that the credential file is readable")
    })?;
    let mut parts = Vec::new();
    if tenant.graph().is_some() {
        parts.push("Graph");
    }
    if tenant.powershell().is_some() {
        parts.push("PowerShell");
    }
    let backend = format!(
        "Microsoft tenant {} through {}",
        cfg.tenant_id,
        parts.join(" and ")
    );
    // The first subject's user and number are read once.
    let first = loaded.subjects.first();
    let input = |name: &str| first.and_then(|s| s.inputs.get(name)).map(String::as_str);
    let (checked, mut signin) = match tenant.graph() {
        Some(g) => match permissions::check(g.client(), input("user"), input("number")).await {
            Ok(c) => {
                let signin = match &c.roles {
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
                (Some(c), signin)
            }
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
        },
        None => (None, "Graph disabled (graph.enabled: false)".to_string()),
    };
    let hosts = powershell_hosts(&tenant, ops).await;
    for (part, label, outcome) in &hosts {
        signin.push_str(&match outcome {
            Ok(h) => format!(
                "\npowershell.{part} ({label}): PowerShell {} {}, {} {}, connected",
                h.ps_version,
                h.ps_edition,
                part_module(part),
                h.connected_module.as_deref().unwrap_or("?")
            ),
            Err(e) => format!("\npowershell.{part} ({label}): FAILED: {e}"),
        });
    }
    let mut checks = Vec::new();
    for (k, reach) in ops {
        let info = k.info();
        if tenant.route(*k) == RouteChoice::PowerShell {
            checks.push(powershell_check(&tenant, &hosts, *k, first).await);
            continue;
        }
        if tenant.route(*k) != RouteChoice::Graph {
            let needs = crate::backend::Tenant::needs(&tenant, *k);
            checks.push(match (needs, info.cmdlet, reach) {
                (Some(needs), Some(cmdlet), Reach::Always) => OpCheck {
                    op: info.name,
                    status: "needs_backend",
                    detail: format!("not available on this backend: needs {needs} ({cmdlet})"),
                },
                (Some(needs), Some(cmdlet), Reach::Conditional(step, cond)) => OpCheck {
                    op: info.name,
                    status: "conditional",
                    detail: format!(
                        "needs {needs} ({cmdlet}), only for subjects that reach \
                         step {step} (when `{cond}`): `portflow plan` blocks them"
                    ),
                },
                _ => manual(*k),
            });
            continue;
        }
        let Some(checked) = &checked else {
            continue;
        };
        if *k == OperationKind::GrantVoiceRoutingPolicy && tenant.powershell().is_none() {
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

#[cfg(feature = "graph")]
type HostOutcome = (
    &'static str,
    String,
    std::result::Result<crate::backend::powershell::session::Hello, crate::backend::BackendError>,
);

#[cfg(feature = "graph")]
fn part_module(part: &str) -> &'static str {
    if part == "onprem" {
        "SkypeForBusiness"
    } else {
        "MicrosoftTeams"
    }
}

/// Start and sign in one host of each PowerShell part the workflow uses.
#[cfg(feature = "graph")]
async fn powershell_hosts(
    tenant: &crate::backend::microsoft::MicrosoftTenant,
    ops: &[(OperationKind, Reach)],
) -> Vec<HostOutcome> {
    use crate::backend::powershell::ops::Part;
    let mut out = Vec::new();
    let Some(ps) = tenant.powershell() else {
        return out;
    };
    for part in [Part::Teams, Part::Onprem] {
        let Some(session) = ps.session(part) else {
            continue;
        };
        let used = ops.iter().any(|(k, _)| {
            tenant.route(*k) == crate::backend::powershell_config::RouteChoice::PowerShell
                && crate::backend::powershell::tenant::part_of(*k) == Some(part)
        });
        if used {
            out.push((
                part.as_str(),
                session.label().to_string(),
                session.probe().await,
            ));
        }
    }
    out
}

/// One PowerShell-routed operation: reads are run once with the first
/// subject's inputs; actions are reported, never performed.
#[cfg(feature = "graph")]
async fn powershell_check(
    tenant: &crate::backend::microsoft::MicrosoftTenant,
    hosts: &[HostOutcome],
    kind: OperationKind,
    first: Option<&crate::spec::runfile::Subject>,
) -> OpCheck {
    use crate::backend::{Call, ErrorKind, Operation, Tenant};
    let info = kind.info();
    let part = crate::backend::powershell::tenant::part_of(kind).map_or("teams", |p| p.as_str());
    let cmdlet = info.cmdlet.unwrap_or(info.microsoft);
    let Some((_, label, outcome)) = hosts.iter().find(|(p, _, _)| *p == part) else {
        return OpCheck {
            op: info.name,
            status: "unknown",
            detail: format!("powershell.{part} was not started"),
        };
    };
    if let Err(e) = outcome {
        return OpCheck {
            op: info.name,
            status: "unknown",
            detail: format!("powershell.{part} ({label}) did not start: {e}"),
        };
    }
    if !info.observation {
        return OpCheck {
            op: info.name,
            status: "available",
            detail: format!("{cmdlet} through {label} (not run by doctor: it changes the tenant)"),
        };
    }
    let input = |name: &str| first.and_then(|s| s.inputs.get(name)).cloned();
    let mut args = serde_json::Map::new();
    args.insert("op".into(), json!(info.name));
    for p in info.params {
        if let Some(v) = input(p.name) {
            args.insert(p.name.into(), json!(v));
        }
    }
    let Ok(op) = serde_json::from_value::<Operation>(serde_json::Value::Object(args)) else {
        return OpCheck {
            op: info.name,
            status: "available",
            detail: format!(
                "{cmdlet} through {label} (not read: the first subject lacks its inputs)"
            ),
        };
    };
    match tenant.execute(&Call::observation(op)).await {
        Ok(_) => OpCheck {
            op: info.name,
            status: "available",
            detail: format!("{cmdlet} through {label}: read the first subject"),
        },
        Err(e) if e.kind == ErrorKind::NotFound => OpCheck {
            op: info.name,
            status: "available",
            detail: format!(
                "{cmdlet} through {label}: answered (the first subject: {})",
                e.message
            ),
        },
        Err(e) if e.kind == ErrorKind::Auth => OpCheck {
            op: info.name,
            status: "missing_permission",
            detail: format!(
                "{cmdlet} was refused: give the app an Entra role that allows it (Teams \
                 Administrator or Teams Communications Administrator; docs/backends.md): {}",
                e.message
            ),
        },
        Err(e) => OpCheck {
            op: info.name,
            status: "unknown",
            detail: format!("{cmdlet} through {label} failed: {}", e.message),
        },
    }
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
