//! `kind: microsoft` as one [`Tenant`]: Microsoft Graph and the PowerShell
//! hosts side by side, each operation routed to one of them.
//!
//! Default route: Graph where it has the operation (and `graph.enabled` is
//! not false), else PowerShell when the operation's part is configured, else
//! nobody: an action becomes a manual task, an observation a `plan` blocker.
//! `routes:` overrides it per operation. `get_user` through PowerShell is
//! completed by Graph's licence paths (`licence_assignments`), which
//! PowerShell cannot tell.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::graph::open::{self as graph_open, OpenError};
use super::graph::tenant::GraphTenant;
use super::powershell::ops::Part;
use super::powershell::runner::{install_local_script, HostCommand, SshTarget};
use super::powershell::session::{Session, SessionAuth, SessionConfig, TEAMS_RESOURCE};
use super::powershell::tenant::{
    part_of, MoveSettings, PowerShellTenant, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT,
};
use super::powershell_config::{route_of, PowerShellPart, RouteChoice};
use super::{BackendError, Call, ErrorKind, Operation, OperationKind, Tenant};
use crate::backend::config::MicrosoftConfig;
use crate::clock::SharedClock;

/// A Microsoft tenant through Graph and PowerShell.
pub struct MicrosoftTenant {
    graph: Option<Arc<GraphTenant>>,
    powershell: Option<PowerShellTenant>,
    routes: HashMap<OperationKind, RouteChoice>,
}

impl std::fmt::Debug for MicrosoftTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrosoftTenant")
            .field("graph", &self.graph.is_some())
            .field("powershell", &self.powershell)
            .finish_non_exhaustive()
    }
}

/// Needs-texts for [`Tenant::needs`] (static: the trait returns `&'static str`).
const NEEDS_TEAMS: &str = "the PowerShell backend (backend.powershell.teams)";
const NEEDS_ONPREM: &str =
    "the PowerShell backend's Skype for Business Server part (backend.powershell.onprem)";

impl MicrosoftTenant {
    /// Over the given parts, routing by [`route_of`] for `cfg`.
    pub fn new(
        graph: Option<Arc<GraphTenant>>,
        powershell: Option<PowerShellTenant>,
        cfg: &MicrosoftConfig,
    ) -> MicrosoftTenant {
        let routes = OperationKind::ALL
            .iter()
            .map(|k| {
                let r = route_of(*k, graph.is_some(), &cfg.powershell, &cfg.routes);
                (*k, r)
            })
            .collect();
        MicrosoftTenant {
            graph,
            powershell,
            routes,
        }
    }

    /// Where `kind` goes ([`RouteChoice::Manual`]: nobody here).
    pub fn route(&self, kind: OperationKind) -> RouteChoice {
        self.routes
            .get(&kind)
            .copied()
            .unwrap_or(RouteChoice::Manual)
    }

    /// The Graph part, if enabled.
    pub fn graph(&self) -> Option<&GraphTenant> {
        self.graph.as_deref()
    }

    /// The PowerShell part, if configured.
    pub fn powershell(&self) -> Option<&PowerShellTenant> {
        self.powershell.as_ref()
    }

    async fn get_user(&self, call: &Call) -> Result<Value, BackendError> {
        let Some(ps) = &self.powershell else {
            return Err(nobody(&call.op));
        };
        let mut view = ps.execute(call).await?;
        // PowerShell cannot tell group-based licences; Graph can.
        if let (Some(g), Operation::GetUser { user }) = (&self.graph, &call.op) {
            let from_graph = g.licence_paths(user, call).await?;
            if let Some(a) = from_graph.get("licence_assignments") {
                view["licence_assignments"] = a.clone();
            }
            let mut names: Vec<Value> = view["licences"].as_array().cloned().unwrap_or_default();
            for n in from_graph["licences"].as_array().into_iter().flatten() {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            view["licences"] = Value::Array(names);
        }
        Ok(view)
    }
}

fn nobody(op: &Operation) -> BackendError {
    BackendError::new(
        ErrorKind::Fatal,
        format!(
            "{} is not available on this backend (configure backend.powershell, or a route)",
            op.kind().info().name
        ),
    )
}

/// Graph's answer that a policy type is refused in this tenant (nothing changed).
fn graph_refused_policy(e: &BackendError) -> bool {
    e.kind == ErrorKind::Precondition
        && e.message
            .starts_with("not available on Graph in this tenant")
}

#[async_trait]
impl Tenant for MicrosoftTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        let kind = call.op.kind();
        match self.route(kind) {
            RouteChoice::Graph => {
                let Some(g) = &self.graph else {
                    return Err(nobody(&call.op));
                };
                match (g.execute(call).await, &self.powershell) {
                    (Err(e), Some(p)) if graph_refused_policy(&e) && p.automates(kind) => {
                        tracing::info!(
                            op = kind.info().name,
                            "Graph refused the policy type; granting through PowerShell"
                        );
                        p.execute(call).await
                    }
                    (answer, _) => answer,
                }
            }
            RouteChoice::PowerShell if kind == OperationKind::GetUser => self.get_user(call).await,
            RouteChoice::PowerShell => match &self.powershell {
                Some(p) => p.execute(call).await,
                None => Err(nobody(&call.op)),
            },
            RouteChoice::Manual => Err(nobody(&call.op)),
        }
    }

    fn automates(&self, kind: OperationKind) -> bool {
        self.route(kind) != RouteChoice::Manual
    }

    fn needs(&self, kind: OperationKind) -> Option<&'static str> {
        let info = kind.info();
        if self.automates(kind) || info.manual.is_some() || info.cmdlet.is_none() {
            return None;
        }
        Some(match part_of(kind) {
            Some(Part::Onprem) => NEEDS_ONPREM,
            _ => NEEDS_TEAMS,
        })
    }
}

/// The PowerShell part `part` of `cfg` as a session.
fn session(
    cfg: &MicrosoftConfig,
    which: Part,
    p: &PowerShellPart,
    tokens: &(
        Arc<super::graph::auth::TokenCache>,
        Arc<super::graph::auth::TokenCache>,
    ),
    clock: SharedClock,
) -> Result<Session, OpenError> {
    let env: Vec<(String, String)> = p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let command = match p.runner() {
        "ssh" => {
            let Some(s) = &p.ssh else {
                return Err(OpenError(format!(
                    "powershell.{}.ssh is missing",
                    which.as_str()
                )));
            };
            let target = SshTarget {
                program: s.program.clone().unwrap_or_else(|| "ssh".into()),
                host: s.host.clone(),
                user: s.user.clone(),
                port: s.port,
                identity_file: s.identity_file.clone(),
                known_hosts: s.known_hosts.clone(),
            };
            let script = p.script.clone().unwrap_or_default();
            HostCommand::ssh(
                &target,
                p.program.as_deref().unwrap_or("powershell.exe"),
                &script,
                &env,
            )
        }
        _ => {
            let script = install_local_script().map_err(OpenError)?;
            HostCommand::local(
                std::path::Path::new(p.program.as_deref().unwrap_or("pwsh")),
                &script,
                &env,
            )
        }
    };
    let auth = match (which, p.auth.as_deref()) {
        (Part::Teams, Some("certificate_thumbprint")) => SessionAuth::Thumbprint {
            thumbprint: p.certificate_thumbprint.clone().unwrap_or_default(),
            application_id: cfg.client_id.clone(),
            tenant_id: cfg.tenant_id.clone(),
        },
        (Part::Teams, _) => SessionAuth::Tokens {
            graph: tokens.0.clone(),
            teams: tokens.1.clone(),
        },
        (Part::Onprem, Some("windows")) => SessionAuth::Windows { tokens: None },
        (Part::Onprem, _) => SessionAuth::Windows {
            tokens: Some(tokens.clone()),
        },
    };
    Ok(Session::new(
        SessionConfig {
            part: which,
            command,
            size: p.pool.unwrap_or(2),
            timeout: p.timeout.unwrap_or(DEFAULT_TIMEOUT),
            connect_timeout: p.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            auth,
        },
        clock,
    ))
}

/// Build the tenant `cfg` describes, on `clock`.
pub fn open(cfg: &MicrosoftConfig, clock: SharedClock) -> Result<MicrosoftTenant, OpenError> {
    let endpoints = graph_open::endpoints(cfg)?;
    let http = super::graph::http_client(
        &endpoints,
        cfg.graph.timeout.unwrap_or(graph_open::DEFAULT_TIMEOUT),
    )
    .map_err(OpenError)?;
    let graph_tokens = Arc::new(graph_open::token_cache(
        cfg,
        &endpoints,
        http.clone(),
        clock.clone(),
        &endpoints.scope(),
    )?);
    let graph = if cfg.graph.enabled == Some(false) {
        None
    } else {
        Some(Arc::new(graph_open::tenant_over(
            cfg,
            &endpoints,
            http.clone(),
            graph_tokens.clone(),
            clock.clone(),
        )?))
    };
    let ps = &cfg.powershell;
    let powershell = if ps.teams.is_some() || ps.onprem.is_some() {
        let teams_tokens = Arc::new(graph_open::token_cache(
            cfg,
            &endpoints,
            http,
            clock.clone(),
            &format!("{TEAMS_RESOURCE}/.default"),
        )?);
        let pair = (graph_tokens, teams_tokens);
        let teams = match &ps.teams {
            Some(p) => Some(session(cfg, Part::Teams, p, &pair, clock.clone())?),
            None => None,
        };
        let onprem = match &ps.onprem {
            Some(p) => Some(session(cfg, Part::Onprem, p, &pair, clock.clone())?),
            None => None,
        };
        let moves = ps
            .onprem
            .as_ref()
            .map_or_else(MoveSettings::default, |p| MoveSettings {
                target: p
                    .move_target
                    .clone()
                    .unwrap_or_else(|| super::powershell::tenant::DEFAULT_MOVE_TARGET.into()),
                hosted_migration_override_url: p.hosted_migration_override_url.clone(),
                max_moves: p
                    .max_moves
                    .unwrap_or(super::powershell::tenant::DEFAULT_MAX_MOVES),
            });
        Some(PowerShellTenant::new(teams, onprem, moves))
    } else {
        None
    };
    Ok(MicrosoftTenant::new(graph, powershell, cfg))
}
