//! `portflow-fake-pwsh`: a test double of portflow's PowerShell host
//! (`host.ps1` under pwsh), speaking its line protocol
//! (`portflow::backend::powershell::protocol`) on stdin/stdout and acting on
//! the simulated tenant that `portflow sim serve` serves, through its Teams
//! PowerShell endpoint (`POST /portflow-sim/v1/execute`, with the session's
//! Teams token). The Graph backend and this host thus change one tenant.
//!
//! Its arguments are ignored (portflow starts it as `pwsh -NoLogo … -File
//! <script>` or in place of `ssh`). Environment:
//!
//! - `PORTFLOW_FAKE_PWSH_SIM`: sim serve's base URL (`http://127.0.0.1:PORT`);
//!   needed for calls only.
//! - `PORTFLOW_FAKE_PWSH_FAULTS`: `crash=0.02,hang=0.01,wrong_id=0.01,
//!   garble=0.005,noise=0.3,seed=7` (rates per call; `noise` defaults to 0.3,
//!   the rest to 0). Draws are keyed by the seed, the process id and the
//!   call's number, so a restarted host does not replay the faults that
//!   killed the last one.
//! - `PORTFLOW_FAKE_PWSH_LOG`: a file to append one JSON line per request to,
//!   `{"pid","type","op","args"}`; a connect logs its token count only.
//! - `PORTFLOW_FAKE_PWSH_SLOW_MS`: a delay before each call.
//! - `PORTFLOW_FAKE_PWSH_STALE`: report another script's SHA-256 in `hello`
//!   (a stale copy on a remote box).
//! - `PORTFLOW_FAKE_PWSH_MODULES`: the modules `hello` reports installed
//!   (comma list; default both).
//! - `PORTFLOW_FAKE_PWSH_FAULT_OPS`: host operations (comma list) that get
//!   the crash/hang/wrong-id/garble faults; others only noise. Unset: all.
//!
//! Faults apply to `call` only, so a restarted host always comes up:
//! `crash` exits 1 before or after performing the call; `hang` answers
//! nothing again (before or after performing it; it exits when stdin
//! closes, so no orphan outlives its parent); `wrong_id` answers with another
//! request's id; `garble` writes a framed line that is not JSON; `noise`
//! writes unframed lines before the reply.
//!
//! Keys: the simulator ignores `Call::key` and `attempt` (its fault draws go
//! by the operation's subject and a per-subject counter), so actions send
//! `fake-pwsh/<pid>/<request id>` and attempt 1 only to look like a backend.

// A test binary: sleeping is its job (SLOW_MS).
#![allow(clippy::disallowed_methods)]

mod project;
mod records;
mod sim;
mod translate;

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use portflow::backend::powershell::ops::{host_op, Part};
use portflow::backend::powershell::protocol::{
    ConnectAuth, HostError, Reply, Request, FRAME, PROTOCOL,
};
use portflow::backend::powershell::script_sha256;
use serde_json::{json, Map, Value};

use crate::sim::{Outcome, Sim};

const PS_VERSION: &str = "7.4.6";
const MODULE_VERSION: &str = "7.0.0";

/// Unframed lines a real pwsh writes: banners, module warnings, `Write-Host`,
/// and one that looks like a reply but has no frame.
const NOISE: &[&str] = &[
    "PowerShell 7.4.6",
    "WARNING: The names of some imported commands from the module 'MicrosoftTeams' include \
     unapproved verbs that might make them less discoverable. To find the commands with \
     unapproved verbs, run the Import-Module command again with the Verbose parameter. For a \
     list of approved verbs, type Get-Verb.",
    "",
    "VERBOSE: Loading module from path 'C:\\Program Files\\PowerShell\\Modules\\MicrosoftTeams\\7.0.0\\MicrosoftTeams.psd1'.",
    "{\"id\":\"0\",\"ok\":true,\"result\":null}",
    "Avertissement : la session expirera bientôt — reconnectez-vous.",
];

/// Fault rates per call.
#[derive(Clone, Debug, Default)]
struct Faults {
    /// Operations the faults strike (`None`: every one).
    ops: Option<Vec<String>>,
    crash: f64,
    hang: f64,
    wrong_id: f64,
    garble: f64,
    noise: f64,
    seed: u64,
}

impl Faults {
    fn parse(text: Option<&str>) -> Result<Faults, String> {
        let mut f = Faults {
            noise: 0.3,
            ..Faults::default()
        };
        for item in text
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((k, v)) = item.split_once('=') else {
                return Err(format!("'{item}' is not name=value"));
            };
            if k.trim() == "seed" {
                f.seed = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("seed '{v}' is not a whole number"))?;
                continue;
            }
            let rate: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("{k}: '{v}' is not a rate between 0 and 1"))?;
            match k.trim() {
                "crash" => f.crash = rate,
                "hang" => f.hang = rate,
                "wrong_id" => f.wrong_id = rate,
                "garble" => f.garble = rate,
                "noise" => f.noise = rate,
                other => return Err(format!("unknown fault '{other}'")),
            }
        }
        Ok(f)
    }
}

/// One splitmix64 step.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keyed draws in [0, 1).
#[derive(Clone, Copy)]
struct Draw(u64);

impl Draw {
    fn new(seed: u64, pid: u32, n: u64) -> Draw {
        Draw(mix(mix(mix(seed) ^ u64::from(pid)) ^ n))
    }
    fn part(self, salt: u64) -> Draw {
        Draw(mix(self.0 ^ mix(salt)))
    }
    fn unit(self) -> f64 {
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The fault drawn for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Crash,
    Hang,
    WrongId,
    Garble,
}

/// A signed-in part: the tokens it was handed (`[graph, teams]` or none).
struct Session {
    tokens: Vec<String>,
}

struct Host {
    pid: u32,
    faults: Faults,
    log: Option<PathBuf>,
    slow: Option<Duration>,
    sim: Option<Result<Sim, String>>,
    sessions: HashMap<Part, Session>,
    calls: u64,
    last_id: Option<String>,
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    // A closed stdout means our parent is gone: nothing to tell anyone.
    let _ = o.write_all(line.as_bytes());
    let _ = o.flush();
}

fn noise_line(i: usize) {
    out(&format!("{}\n", NOISE[i % NOISE.len()]));
}

impl Host {
    fn from_env() -> Result<Host, String> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let mut faults = Faults::parse(var("PORTFLOW_FAKE_PWSH_FAULTS").as_deref())
            .map_err(|e| format!("PORTFLOW_FAKE_PWSH_FAULTS: {e}"))?;
        faults.ops = var("PORTFLOW_FAKE_PWSH_FAULT_OPS")
            .map(|v| v.split(',').map(|o| o.trim().to_string()).collect());
        let slow = match var("PORTFLOW_FAKE_PWSH_SLOW_MS") {
            None => None,
            Some(v) => Some(Duration::from_millis(v.parse().map_err(|_| {
                format!("PORTFLOW_FAKE_PWSH_SLOW_MS: '{v}' is not milliseconds")
            })?)),
        };
        Ok(Host {
            pid: std::process::id(),
            faults,
            log: var("PORTFLOW_FAKE_PWSH_LOG").map(PathBuf::from),
            slow,
            sim: var("PORTFLOW_FAKE_PWSH_SIM").map(|u| Sim::new(&u)),
            sessions: HashMap::new(),
            calls: 0,
            last_id: None,
        })
    }

    /// Append one line to the request log (never a token).
    fn log(&self, entry: Value) {
        let Some(path) = &self.log else { return };
        let mut line = entry.to_string();
        line.push('\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "portflow-fake-pwsh: cannot append to {}: {e}",
                path.display()
            );
        }
    }

    fn hello(&self, id: &str) -> Reply {
        self.log(json!({"pid": self.pid, "type": "hello", "op": null, "args": null}));
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let sha = match var("PORTFLOW_FAKE_PWSH_STALE") {
            Some(_) => "0".repeat(64),
            None => script_sha256(),
        };
        let installed = var("PORTFLOW_FAKE_PWSH_MODULES")
            .unwrap_or_else(|| "MicrosoftTeams,SkypeForBusiness".into());
        let version = |m: &str| {
            installed
                .split(',')
                .any(|i| i.trim() == m)
                .then_some(MODULE_VERSION)
        };
        Reply::success(
            id,
            json!({
                "protocol": PROTOCOL,
                "script_sha256": sha,
                "ps_version": PS_VERSION,
                "ps_edition": "Core",
                "modules": {
                    "MicrosoftTeams": version("MicrosoftTeams"),
                    "SkypeForBusiness": version("SkypeForBusiness"),
                },
            }),
        )
    }

    fn connect(&mut self, id: &str, part: &str, auth: &ConnectAuth) -> Reply {
        let (kind, tokens) = match auth {
            ConnectAuth::AccessTokens { tokens } => ("access_tokens", Some(tokens)),
            ConnectAuth::Windows { tokens } => ("windows", Some(tokens)),
            ConnectAuth::CertificateThumbprint { .. } => ("certificate_thumbprint", None),
        };
        self.log(json!({
            "pid": self.pid,
            "type": "connect",
            "part": part,
            "auth_kind": kind,
            "tokens": tokens.map_or(0, |t| t.len()),
        }));
        let part = match part {
            "teams" => Part::Teams,
            "onprem" => Part::Onprem,
            other => {
                return Reply::failure(
                    id,
                    records::host(
                        "UnknownPart",
                        "InvalidArgument",
                        "System.ArgumentException",
                        format!("unknown part '{other}' (teams or onprem)"),
                    ),
                )
            }
        };
        // Connecting again disconnects first.
        self.sessions.remove(&part);
        let tokens = match auth {
            ConnectAuth::CertificateThumbprint { .. } => {
                return Reply::failure(
                    id,
                    records::fake(
                        "NotSupported",
                        "certificate_thumbprint sign-in is not supported by the test host".into(),
                    ),
                )
            }
            ConnectAuth::AccessTokens { tokens } if tokens.len() != 2 => {
                return Reply::failure(id, token_count_error("access_tokens", tokens.len()))
            }
            ConnectAuth::Windows { tokens } if !tokens.is_empty() && tokens.len() != 2 => {
                return Reply::failure(id, token_count_error("windows", tokens.len()))
            }
            ConnectAuth::AccessTokens { tokens } | ConnectAuth::Windows { tokens } => {
                tokens.clone()
            }
        };
        self.sessions.insert(part, Session { tokens });
        Reply::success(
            id,
            json!({"connected": true, "module": part.module(), "module_version": MODULE_VERSION}),
        )
    }

    /// A fresh GUID-like correlation id.
    fn correlation_id(&self, salt: u64) -> String {
        let d = Draw::new(self.faults.seed, self.pid, self.calls).part(0xC0 ^ salt);
        let (a, b) = (d.0, d.part(1).0);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// Check and run one call.
    async fn call(
        &self,
        id: &str,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, HostError> {
        let Some(op) = host_op(name) else {
            return Err(records::host(
                "UnknownOperation",
                "InvalidArgument",
                "System.ArgumentException",
                format!("unknown operation '{name}'"),
            ));
        };
        if let Some(bad) = args.keys().find(|k| !op.params.contains(&k.as_str())) {
            return Err(records::host(
                "ParameterNotAllowed",
                "InvalidArgument",
                "System.ArgumentException",
                format!(
                    "parameter '{bad}' is not allowed for {name} (allowed: {})",
                    op.params.join(", ")
                ),
            ));
        }
        let Some(session) = self.sessions.get(&op.part) else {
            return Err(records::host(
                "NotConnected",
                "InvalidOperation",
                "System.InvalidOperationException",
                format!(
                    "{name} needs the {} part: connect it first",
                    op.part.as_str()
                ),
            ));
        };
        let plan = translate::plan(op, args)?;
        let Some(token) = session.tokens.get(1) else {
            // The fake reaches the tenant with a Teams token only.
            return Err(records::cmdlet(
                op,
                "Unauthorized",
                "AuthenticationError",
                "the test host's on-premises session has no tokens to reach the simulated \
                 tenant with (connect it with windows auth and tokens)"
                    .into(),
                self.correlation_id(1),
            ));
        };
        let sim = match &self.sim {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(records::fake("NotConfigured", e.clone())),
            None => {
                return Err(records::fake(
                    "NotConfigured",
                    "PORTFLOW_FAKE_PWSH_SIM (sim serve's URL) is not set".into(),
                ))
            }
        };
        let action = !plan.op.kind().info().observation;
        let key = action.then(|| format!("fake-pwsh/{}/{id}", self.pid));
        match sim.execute(token, &plan.op, key, u32::from(action)).await {
            Outcome::Ok(v) => project::project(op, &plan, v),
            Outcome::Failed(e) => Err(records::from_backend(op, &e, self.correlation_id(2))),
            Outcome::Unauthorized => Err(records::unauthorized(op, self.correlation_id(3))),
            Outcome::Broken(m) => Err(records::cmdlet(
                op,
                "ServiceUnavailable",
                "ConnectionError",
                m,
                self.correlation_id(4),
            )),
        }
    }

    /// Which fault this call gets, whether it strikes after performing the
    /// call, and whether noise comes before the reply.
    fn draw(&self, op: &str) -> (Fault, bool, bool) {
        let d = Draw::new(self.faults.seed, self.pid, self.calls);
        let f = &self.faults;
        let struck = f.ops.as_ref().is_none_or(|ops| ops.iter().any(|o| o == op));
        let u = if struck { d.part(1).unit() } else { 1.0 };
        let mut edge = 0.0;
        let mut fault = Fault::None;
        for (rate, which) in [
            (f.crash, Fault::Crash),
            (f.hang, Fault::Hang),
            (f.wrong_id, Fault::WrongId),
            (f.garble, Fault::Garble),
        ] {
            edge += rate;
            if u < edge {
                fault = which;
                break;
            }
        }
        (fault, d.part(2).unit() < 0.5, d.part(3).unit() < f.noise)
    }
}

fn token_count_error(kind: &str, n: usize) -> HostError {
    records::host(
        "InvalidTokens",
        "InvalidArgument",
        "System.ArgumentException",
        format!("{kind} takes 2 tokens (Graph, then Teams), got {n}"),
    )
}

/// Answer nothing any more; leave when the parent closes our stdin.
fn hang(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> ! {
    for line in lines.by_ref() {
        if line.is_err() {
            break;
        }
    }
    std::process::exit(0)
}

fn main() {
    let mut host = match Host::from_env() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("portflow-fake-pwsh: {e}");
            std::process::exit(2);
        }
    };
    // One request at a time: the runtime only carries the HTTP call.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portflow-fake-pwsh: no async runtime: {e}");
            std::process::exit(2);
        }
    };
    // What pwsh and the module print before the script's first line.
    noise_line(0);
    noise_line(1);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    while let Some(line) = lines.next() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("portflow-fake-pwsh: stdin: {e}");
                std::process::exit(1);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let request = match serde_json::from_value::<Request>(value) {
            Ok(r) => r,
            Err(e) => {
                host.log(json!({"pid": host.pid, "type": null, "op": null, "args": null}));
                let err = records::host(
                    "InvalidRequest",
                    "InvalidArgument",
                    "System.ArgumentException",
                    format!("not a request: {e}"),
                );
                out(&Reply::failure(&id, err).to_line());
                continue;
            }
        };
        let reply = match &request {
            Request::Hello { id } => host.hello(id),
            Request::Connect { id, part, auth } => host.connect(id, part, auth),
            Request::Call { id, op, args } => {
                host.log(json!({"pid": host.pid, "type": "call", "op": op, "args": args}));
                host.calls += 1;
                let (fault, after, noise) = host.draw(op);
                if !after {
                    match fault {
                        Fault::Crash => std::process::exit(1),
                        Fault::Hang => hang(&mut lines),
                        _ => {}
                    }
                }
                if let Some(d) = host.slow {
                    std::thread::sleep(d);
                }
                let mut reply = match rt.block_on(host.call(id, op, args)) {
                    Ok(v) => Reply::success(id, v),
                    Err(e) => Reply::failure(id, e),
                };
                match fault {
                    Fault::Crash => std::process::exit(1),
                    Fault::Hang => hang(&mut lines),
                    _ => {}
                }
                if noise {
                    let n = host.calls as usize;
                    for i in 0..1 + n % 2 {
                        noise_line(n + i);
                    }
                }
                match fault {
                    Fault::Garble => {
                        let full = reply.to_line();
                        let body = &full[FRAME.len()..];
                        // A prefix of a JSON object is never JSON.
                        out(&format!("{FRAME}{}\n", &body[..body.len() / 2]));
                        host.last_id = Some(id.clone());
                        continue;
                    }
                    Fault::WrongId => {
                        reply.id = match &host.last_id {
                            Some(prev) if prev != id => prev.clone(),
                            _ => format!("{id}-stale"),
                        };
                    }
                    _ => {}
                }
                reply
            }
        };
        host.last_id = Some(request.id().to_string());
        out(&reply.to_line());
    }
}
