//! A pool of host processes for one part of one tenant: each runs one request
//! at a time; a process that faults is killed and a fresh one started on the
//! next call. Each process says `hello` (its script must be this build's),
//! then `connect`s, and connects again before its tokens expire and once
//! after an auth-class error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Mutex, Semaphore};

use super::errors::{to_backend, wants_reconnect};
use super::ops::{HostOp, Part};
use super::process::{Fault, HostProcess};
use super::protocol::{ConnectAuth, Request, PROTOCOL};
use super::runner::HostCommand;
use super::script_sha256;
use crate::backend::graph::auth::{Token, TokenCache};
use crate::backend::{BackendError, ErrorKind};
use crate::clock::{SharedClock, Timestamp};

/// The resource `Connect-MicrosoftTeams -AccessTokens` needs beside Graph:
/// "Skype and Teams Tenant Admin API".
pub const TEAMS_RESOURCE: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";

/// How a part's hosts sign in.
#[derive(Clone)]
pub enum SessionAuth {
    /// App-only tokens from portflow's own credential, handed over stdin.
    Tokens {
        /// Graph scope.
        graph: Arc<TokenCache>,
        /// [`TEAMS_RESOURCE`] scope.
        teams: Arc<TokenCache>,
    },
    /// A certificate in the Windows host's store.
    Thumbprint {
        /// SHA-1 thumbprint.
        thumbprint: String,
        /// The app's client id.
        application_id: String,
        /// The tenant.
        tenant_id: String,
    },
    /// The on-premises shell as the SSH account; tokens (when given) for
    /// `Move-CsUser -AccessTokens`.
    Windows {
        /// Graph and Teams token caches.
        tokens: Option<(Arc<TokenCache>, Arc<TokenCache>)>,
    },
}

/// One part's pool settings.
#[derive(Clone)]
pub struct SessionConfig {
    /// Which part.
    pub part: Part,
    /// How to start a host.
    pub command: HostCommand,
    /// Processes in the pool.
    pub size: usize,
    /// Deadline of one cmdlet call.
    pub timeout: Duration,
    /// Deadline of start-up (`hello`) and of `connect` (module import).
    pub connect_timeout: Duration,
    /// Sign-in.
    pub auth: SessionAuth,
}

/// What a host said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// `$PSVersionTable.PSVersion`.
    pub ps_version: String,
    /// `Core` or `Desktop`.
    pub ps_edition: String,
    /// Module name → highest installed version (`None`: not installed).
    pub modules: BTreeMap<String, Option<String>>,
    /// The part's module version after `connect`.
    pub connected_module: Option<String>,
}

struct Live {
    proc: HostProcess,
    hello: Hello,
    /// When to connect again (the earlier token's refresh time).
    reconnect_at: Option<Timestamp>,
    /// Tokens of the last connect (to invalidate after an auth error).
    tokens: Vec<Token>,
    /// A request was written and its reply not read: a caller gave up
    /// (its future was dropped), so the stream is out of step.
    busy: bool,
}

/// A pool of hosts for one part.
pub struct Session {
    cfg: SessionConfig,
    slots: Vec<Mutex<Option<Live>>>,
    permits: Semaphore,
    clock: SharedClock,
    started: AtomicU64,
}

fn unknown(cmdlet: &str, label: &str, f: &Fault) -> BackendError {
    BackendError::new(
        ErrorKind::Transient,
        format!("{cmdlet}: the PowerShell host ({label}) {f}; whether the cmdlet ran is unknown"),
    )
    .with_unknown_outcome()
}

impl Session {
    /// A pool (no process is started before the first call).
    pub fn new(cfg: SessionConfig, clock: SharedClock) -> Session {
        let size = cfg.size.max(1);
        Session {
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
            permits: Semaphore::new(size),
            cfg,
            clock,
            started: AtomicU64::new(0),
        }
    }

    /// The part.
    pub fn part(&self) -> Part {
        self.cfg.part
    }

    /// `local pwsh`, `ssh admin01`.
    pub fn label(&self) -> &str {
        &self.cfg.command.label
    }

    /// Host processes started so far.
    pub fn processes_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Start (or reuse) a host and connect it; what it said (for `doctor`).
    pub async fn probe(&self) -> Result<Hello, BackendError> {
        let (_permit, mut slot) = self.slot().await?;
        self.ensure(&mut slot, "PowerShell host").await?;
        Ok(slot.as_ref().map(|l| l.hello.clone()).unwrap_or_default())
    }

    /// Run `op` with `args`. `read_only`: safe to send again on a fresh
    /// process after a fault.
    pub async fn call(
        &self,
        op: &HostOp,
        args: Map<String, Value>,
        read_only: bool,
    ) -> Result<Value, BackendError> {
        let (_permit, mut slot) = self.slot().await?;
        let mut reconnected = false;
        let mut restarted = false;
        loop {
            self.ensure(&mut slot, op.cmdlet).await?;
            let Some(live) = slot.as_mut() else {
                return Err(BackendError::new(
                    ErrorKind::Transient,
                    "no PowerShell host",
                ));
            };
            let id = live.proc.next_id();
            let req = Request::Call {
                id,
                op: op.name.to_string(),
                args: args.clone(),
            };
            live.busy = true;
            let answer = live.proc.request(&req, self.cfg.timeout).await;
            live.busy = false;
            match answer {
                Ok(r) if r.ok => return Ok(r.result),
                Ok(r) => {
                    let e = r.error.unwrap_or_default();
                    if !reconnected && wants_reconnect(&e) {
                        // Sign in again with fresh tokens, then send it once more.
                        reconnected = true;
                        self.forget_tokens(live).await;
                        live.reconnect_at = Some(Timestamp(0));
                        continue;
                    }
                    return Err(to_backend(op.cmdlet, &e));
                }
                Err(f) => {
                    tracing::warn!(host = %self.cfg.command.label, pid = live.proc.pid(),
                        op = op.name, fault = %f, "PowerShell host faulted; restarting it");
                    if let Some(l) = slot.take() {
                        l.proc.kill().await;
                    }
                    if read_only && !restarted {
                        restarted = true;
                        continue;
                    }
                    return Err(unknown(op.cmdlet, &self.cfg.command.label, &f));
                }
            }
        }
    }

    async fn slot(
        &self,
    ) -> Result<
        (
            tokio::sync::SemaphorePermit<'_>,
            tokio::sync::MutexGuard<'_, Option<Live>>,
        ),
        BackendError,
    > {
        let permit =
            self.permits.acquire().await.map_err(|_| {
                BackendError::new(ErrorKind::Fatal, "the PowerShell pool is closed")
            })?;
        // A permit means a slot is free; only permit holders lock slots.
        for s in &self.slots {
            if let Ok(g) = s.try_lock() {
                return Ok((permit, g));
            }
        }
        let g = self.slots[0].lock().await;
        Ok((permit, g))
    }

    /// A live, connected, current host in `slot`.
    async fn ensure(&self, slot: &mut Option<Live>, cmdlet: &str) -> Result<(), BackendError> {
        if slot.as_ref().is_some_and(|l| l.busy) {
            if let Some(l) = slot.take() {
                tracing::debug!(host = %self.cfg.command.label, pid = l.proc.pid(),
                    "PowerShell host abandoned mid-request; restarting it");
                l.proc.kill().await;
            }
        }
        if slot.is_none() {
            *slot = Some(self.start(cmdlet).await?);
        }
        let now = self.clock.now();
        let Some(live) = slot.as_mut() else {
            return Ok(());
        };
        if live.reconnect_at.is_some_and(|t| now >= t) {
            if let Err(e) = self.connect(live, cmdlet).await {
                // Half-connected: start over with a fresh process.
                if let Some(l) = slot.take() {
                    l.proc.kill().await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    async fn start(&self, cmdlet: &str) -> Result<Live, BackendError> {
        let label = &self.cfg.command.label;
        let mut proc = HostProcess::spawn(&self.cfg.command).map_err(|f| {
            BackendError::new(
                ErrorKind::Fatal,
                format!("{cmdlet}: the PowerShell host ({label}) {f}"),
            )
        })?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let id = proc.next_id();
        let hello = match proc
            .request(&Request::Hello { id }, self.cfg.connect_timeout)
            .await
        {
            Ok(r) if r.ok => r.result,
            Ok(r) => {
                proc.kill().await;
                let e = r.error.unwrap_or_default();
                return Err(BackendError::new(
                    ErrorKind::Fatal,
                    format!(
                        "the PowerShell host ({label}) refused `hello`: {}",
                        e.message
                    ),
                ));
            }
            Err(f) => {
                let tail = proc.stderr_tail();
                proc.kill().await;
                let mut msg = format!("the PowerShell host ({label}) {f} at start-up");
                if !tail.is_empty() && !msg.contains(&tail) {
                    msg.push_str(&format!("; stderr: {tail}"));
                }
                return Err(BackendError::new(ErrorKind::Transient, msg));
            }
        };
        let protocol = hello.get("protocol").and_then(Value::as_u64);
        let sha = hello
            .get("script_sha256")
            .and_then(Value::as_str)
            .unwrap_or("");
        if protocol != Some(PROTOCOL) || !sha.eq_ignore_ascii_case(&script_sha256()) {
            proc.kill().await;
            return Err(BackendError::new(
                ErrorKind::Fatal,
                format!(
                    "the PowerShell host script at {label} is not this portflow's (protocol {}, \
                     sha256 {}…, expected {}…): install this build's copy with `portflow \
                     powershell script --out host.ps1`",
                    protocol.map_or("?".to_string(), |p| p.to_string()),
                    sha.get(..12).unwrap_or(sha),
                    &script_sha256()[..12]
                ),
            ));
        }
        let text = |k: &str| {
            hello
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let modules = hello
            .get("modules")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                    .collect()
            })
            .unwrap_or_default();
        let mut live = Live {
            proc,
            hello: Hello {
                ps_version: text("ps_version"),
                ps_edition: text("ps_edition"),
                modules,
                connected_module: None,
            },
            reconnect_at: None,
            tokens: Vec::new(),
            busy: false,
        };
        let module = self.cfg.part.module();
        if live.hello.modules.get(module).is_none_or(Option::is_none) {
            live.proc.kill().await;
            return Err(BackendError::new(
                ErrorKind::Fatal,
                format!(
                    "the {module} module is not installed where the PowerShell host runs \
                     ({label}); docs/backends.md says how to install it"
                ),
            ));
        }
        if let Err(e) = self.connect(&mut live, cmdlet).await {
            live.proc.kill().await;
            return Err(e);
        }
        tracing::debug!(host = %label, pid = live.proc.pid(), ps = %live.hello.ps_version,
            module = ?live.hello.connected_module, "PowerShell host ready");
        Ok(live)
    }

    async fn tokens(
        &self,
        pair: &(Arc<TokenCache>, Arc<TokenCache>),
    ) -> Result<Vec<Token>, BackendError> {
        Ok(vec![pair.0.token().await?, pair.1.token().await?])
    }

    async fn connect(&self, live: &mut Live, cmdlet: &str) -> Result<(), BackendError> {
        let (auth, tokens) = match &self.cfg.auth {
            SessionAuth::Tokens { graph, teams } => {
                let t = self.tokens(&(graph.clone(), teams.clone())).await?;
                let values = t.iter().map(|t| t.expose().to_string()).collect();
                (ConnectAuth::AccessTokens { tokens: values }, t)
            }
            SessionAuth::Thumbprint {
                thumbprint,
                application_id,
                tenant_id,
            } => (
                ConnectAuth::CertificateThumbprint {
                    thumbprint: thumbprint.clone(),
                    application_id: application_id.clone(),
                    tenant_id: tenant_id.clone(),
                },
                Vec::new(),
            ),
            SessionAuth::Windows { tokens } => match tokens {
                Some(pair) => {
                    let t = self.tokens(pair).await?;
                    let values = t.iter().map(|t| t.expose().to_string()).collect();
                    (ConnectAuth::Windows { tokens: values }, t)
                }
                None => (ConnectAuth::Windows { tokens: Vec::new() }, Vec::new()),
            },
        };
        let id = live.proc.next_id();
        let req = Request::Connect {
            id,
            part: self.cfg.part.as_str().to_string(),
            auth,
        };
        live.busy = true;
        let answer = live.proc.request(&req, self.cfg.connect_timeout).await;
        live.busy = false;
        let label = &self.cfg.command.label;
        match answer {
            Ok(r) if r.ok => {
                live.hello.connected_module = r
                    .result
                    .get("module_version")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                live.reconnect_at = tokens.iter().map(Token::refresh_at).min();
                live.tokens = tokens;
                Ok(())
            }
            Ok(r) => {
                let e = r.error.unwrap_or_default();
                let mut b = to_backend("Connect-MicrosoftTeams", &e);
                if self.cfg.part == Part::Onprem {
                    b.message = b.message.replacen(
                        "Connect-MicrosoftTeams",
                        "Import-Module SkypeForBusiness",
                        1,
                    );
                }
                live.tokens = tokens;
                self.forget_tokens(live).await;
                Err(b)
            }
            // The cmdlet itself has not run: an ordinary transient error.
            Err(f) => Err(BackendError::new(
                ErrorKind::Transient,
                format!("{cmdlet}: the PowerShell host ({label}) {f} while connecting"),
            )),
        }
    }

    /// After an auth error: the next connect fetches new tokens.
    async fn forget_tokens(&self, live: &mut Live) {
        let caches: Vec<Arc<TokenCache>> = match &self.cfg.auth {
            SessionAuth::Tokens { graph, teams } => vec![graph.clone(), teams.clone()],
            SessionAuth::Windows {
                tokens: Some((g, t)),
            } => vec![g.clone(), t.clone()],
            _ => Vec::new(),
        };
        for (cache, token) in caches.iter().zip(std::mem::take(&mut live.tokens)) {
            cache.invalidate(&token).await;
        }
    }
}
