//! `powershell:` and `routes:` of `kind: microsoft`: where the PowerShell
//! hosts run, and which backend part performs each operation.
//!
//! ```yaml
//! backend:
//!   kind: microsoft
//!   # tenant_id, client_id, credential, graph: as before
//!   powershell:
//!     teams: {runner: local}                  # pwsh + MicrosoftTeams here
//!     onprem:                                 # the Skype for Business Server shell
//!       runner: ssh
//!       ssh: {host: sfbadmin01.corp.contoso.com, user: svc-portflow}
//!       script: 'C:\portflow\host.ps1'
//!   routes: {get_user: powershell}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::OperationKind;

/// `powershell:`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerShellSettings {
    /// The cloud cmdlets (MicrosoftTeams module).
    pub teams: Option<Box<PowerShellPart>>,
    /// The Skype for Business Server cmdlets (`Get-CsUser`, `Set-CsUser`,
    /// `Move-CsUser`), on the on-premises admin box.
    pub onprem: Option<Box<PowerShellPart>>,
}

/// One part: `powershell.teams` or `powershell.onprem`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerShellPart {
    /// `local` (default) or `ssh`.
    pub runner: Option<String>,
    /// PowerShell executable: `pwsh` (local default) or `powershell.exe`
    /// (ssh default, Windows PowerShell 5.1 for the SkypeForBusiness module).
    pub program: Option<String>,
    /// ssh only: where `portflow powershell script` was installed on the
    /// remote box. A local runner always uses the script built into portflow.
    pub script: Option<String>,
    /// ssh only: how to reach the box.
    pub ssh: Option<SshSettings>,
    /// Host processes for this part (default 2).
    pub pool: Option<usize>,
    /// Deadline of one cmdlet call (default 100s; keep it below the run's
    /// `call_timeout`).
    #[serde(default, deserialize_with = "crate::clock::opt_duration")]
    #[schemars(with = "Option<crate::spec::schema::DurationText>")]
    pub timeout: Option<Duration>,
    /// Deadline of a host's start-up and sign-in (default 3m).
    #[serde(default, deserialize_with = "crate::clock::opt_duration")]
    #[schemars(with = "Option<crate::spec::schema::DurationText>")]
    pub connect_timeout: Option<Duration>,
    /// teams: `access_tokens` (default: portflow's credential, tokens over
    /// stdin) or `certificate_thumbprint` (a Windows host's certificate
    /// store). onprem: `windows` (the SSH account) or `windows_and_tokens`
    /// (default: also hands the tokens to `Move-CsUser -AccessTokens`).
    pub auth: Option<String>,
    /// With `auth: certificate_thumbprint`: the certificate's SHA-1 thumbprint.
    pub certificate_thumbprint: Option<String>,
    /// onprem: concurrent `Move-CsUser` calls at most (default 25).
    pub max_moves: Option<usize>,
    /// onprem: `Move-CsUser -Target` (default `sipfed.online.lync.com`).
    pub move_target: Option<String>,
    /// onprem: `Move-CsUser -HostedMigrationOverrideUrl`.
    pub hosted_migration_override_url: Option<String>,
    /// Extra environment of the host process (e.g. `PSModulePath`); never
    /// secrets: values are stored with the run.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `ssh:` of a part.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Host name or address of the Windows admin box.
    pub host: String,
    /// Login name.
    pub user: Option<String>,
    /// Port (default 22).
    pub port: Option<u16>,
    /// Private key file (absolute); else ssh's defaults and agent.
    pub identity_file: Option<PathBuf>,
    /// known_hosts file (absolute); host keys are then checked strictly.
    pub known_hosts: Option<PathBuf>,
    /// The ssh client (default `ssh`).
    pub program: Option<PathBuf>,
}

/// Which backend part performs an operation (`routes:` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteChoice {
    /// Microsoft Graph.
    Graph,
    /// The PowerShell hosts.
    PowerShell,
    /// A person (manual task); actions only.
    Manual,
}

impl RouteChoice {
    /// Parse a `routes:` value.
    pub fn parse(s: &str) -> Option<RouteChoice> {
        match s {
            "graph" => Some(RouteChoice::Graph),
            "powershell" => Some(RouteChoice::PowerShell),
            "manual" => Some(RouteChoice::Manual),
            _ => None,
        }
    }
}

/// Where `kind` goes for a `kind: microsoft` backend: `routes:` first, else
/// Graph where it has the operation (and is enabled; `get_user` prefers
/// PowerShell, whose view has the homing and on-premises fields), else the
/// PowerShell part that runs it, else a person ([`RouteChoice::Manual`]).
pub fn route_of(
    kind: OperationKind,
    graph_enabled: bool,
    ps: &PowerShellSettings,
    routes: &BTreeMap<String, String>,
) -> RouteChoice {
    let graph = graph_enabled && GRAPH_OPERATIONS.contains(&kind);
    let powershell = powershell_part(kind).is_some_and(|p| ps.has(p));
    let chosen = routes
        .get(kind.info().name)
        .and_then(|r| RouteChoice::parse(r))
        .filter(|c| match c {
            RouteChoice::Graph => graph,
            RouteChoice::PowerShell => powershell,
            RouteChoice::Manual => !kind.info().observation,
        });
    if let Some(c) = chosen {
        return c;
    }
    if graph && !(kind == OperationKind::GetUser && powershell) {
        RouteChoice::Graph
    } else if powershell {
        RouteChoice::PowerShell
    } else {
        RouteChoice::Manual
    }
}

/// Which part a PowerShell-capable operation runs in (`None`: no cmdlet).
pub fn powershell_part(kind: OperationKind) -> Option<&'static str> {
    use OperationKind as K;
    match kind {
        K::ClearOnpremLineUri | K::GetOnpremUser | K::EnableOnpremVoice | K::MoveUser => {
            Some("onprem")
        }
        K::GetPortOrder | K::RemoveLicence | K::ResetConferenceId => None,
        _ => Some("teams"),
    }
}

/// Operations Graph performs (also `graph::tenant::AUTOMATED`); here so that
/// routing is known without the `graph` feature.
pub const GRAPH_OPERATIONS: &[OperationKind] = &[
    OperationKind::GetUser,
    OperationKind::GetNumber,
    OperationKind::AssignNumber,
    OperationKind::RemoveNumber,
    OperationKind::SetNumberLocation,
    OperationKind::RemoveLicence,
    OperationKind::GrantVoiceRoutingPolicy,
];

/// Deadline of one cmdlet call unless the part says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(100);
/// Deadline of a host's start-up and sign-in (importing MicrosoftTeams
/// takes tens of seconds on a cold host).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(180);

const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));
const CONNECT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(1800));

impl PowerShellSettings {
    /// Whether `part` (`teams`/`onprem`) is configured.
    pub fn has(&self, part: &str) -> bool {
        match part {
            "teams" => self.teams.is_some(),
            "onprem" => self.onprem.is_some(),
            _ => false,
        }
    }

    /// Values out of bounds, as (path below `backend`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        for (name, part) in [("teams", &self.teams), ("onprem", &self.onprem)] {
            if let Some(part) = part {
                part.problems(name, &mut p);
            }
        }
        p
    }
}

fn hex40(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl PowerShellPart {
    /// The runner, defaulted.
    pub fn runner(&self) -> &str {
        self.runner.as_deref().unwrap_or("local")
    }

    fn problems(&self, name: &str, p: &mut Vec<(String, String)>) {
        let at = |f: &str| format!("powershell.{name}.{f}");
        let mut push = |f: &str, m: String| p.push((at(f), format!("{}: {m}", at(f))));
        let ssh = match self.runner() {
            "local" => {
                if self.script.is_some() {
                    push("script", "only for `runner: ssh`: a local runner uses the script built into portflow".into());
                }
                if self.ssh.is_some() {
                    push("ssh", "only for `runner: ssh`".into());
                }
                false
            }
            "ssh" => {
                match &self.script {
                    None => push(
                        "script",
                        "the path of host.ps1 on the remote box (install it with `portflow powershell script --out host.ps1`)".into(),
                    ),
                    Some(s) => {
                        if let Some(why) = remote_word_problem(s) {
                            push("script", why.into());
                        }
                    }
                }
                match &self.ssh {
                    None => push(
                        "ssh",
                        "`ssh: {host: …}` is needed with `runner: ssh`".into(),
                    ),
                    Some(s) => s.problems(&mut push),
                }
                true
            }
            other => {
                push("runner", format!("{other:?}: `local` or `ssh`"));
                false
            }
        };
        if let Some(prog) = &self.program {
            let bad = if ssh {
                remote_word_problem(prog)
            } else if prog.is_empty() || prog.contains('\0') {
                Some("is empty or has a NUL")
            } else {
                None
            };
            if let Some(why) = bad {
                push("program", why.into());
            }
        }
        if let Some(n) = self.pool {
            if !(1..=16).contains(&n) {
                push("pool", "between 1 and 16 host processes".into());
            }
        }
        if let Some(t) = self.timeout {
            if !(TIMEOUT_RANGE.0..=TIMEOUT_RANGE.1).contains(&t) {
                push("timeout", "between 1s and 1h".into());
            }
        }
        if let Some(t) = self.connect_timeout {
            if !(CONNECT_RANGE.0..=CONNECT_RANGE.1).contains(&t) {
                push("connect_timeout", "between 1s and 30m".into());
            }
        }
        let auths: &[&str] = if name == "teams" {
            &["access_tokens", "certificate_thumbprint"]
        } else {
            &["windows", "windows_and_tokens"]
        };
        if let Some(a) = &self.auth {
            if !auths.contains(&a.as_str()) {
                push("auth", format!("{a:?}: one of {}", auths.join(", ")));
            }
        }
        let thumb = self.auth.as_deref() == Some("certificate_thumbprint");
        match (&self.certificate_thumbprint, thumb) {
            (Some(t), true) if !hex40(t) => push(
                "certificate_thumbprint",
                "40 hexadecimal digits (SHA-1)".into(),
            ),
            (None, true) => push(
                "certificate_thumbprint",
                "needed with `auth: certificate_thumbprint`".into(),
            ),
            (Some(_), false) => push(
                "certificate_thumbprint",
                "only with `auth: certificate_thumbprint`".into(),
            ),
            _ => {}
        }
        if name == "teams" {
            for (f, set) in [
                ("max_moves", self.max_moves.is_some()),
                ("move_target", self.move_target.is_some()),
                (
                    "hosted_migration_override_url",
                    self.hosted_migration_override_url.is_some(),
                ),
            ] {
                if set {
                    push(
                        f,
                        "only in `powershell.onprem` (Move-CsUser runs there)".into(),
                    );
                }
            }
        }
        if let Some(n) = self.max_moves {
            if !(1..=100).contains(&n) {
                push("max_moves", "between 1 and 100".into());
            }
        }
        if let Some(t) = &self.move_target {
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                push(
                    "move_target",
                    "a host name such as sipfed.online.lync.com".into(),
                );
            }
        }
        if let Some(u) = &self.hosted_migration_override_url {
            if !u.starts_with("https://") || u.contains(char::is_whitespace) {
                push("hosted_migration_override_url", "an https:// URL".into());
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                push("env", format!("{k:?}: not a valid environment variable"));
            } else if super::config::is_secret_key(k) {
                push("env", format!("{k:?}: environment values are stored with the run; never pass a secret this way"));
            }
        }
    }
}

impl SshSettings {
    fn problems(&self, push: &mut dyn FnMut(&str, String)) {
        let word = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && !s.contains(|c: char| c.is_whitespace() || c.is_control())
        };
        if !word(&self.host) {
            push(
                "ssh.host",
                "a host name or address (no spaces, not starting with `-`)".into(),
            );
        }
        if let Some(u) = &self.user {
            if !word(u) || u.contains('@') {
                push(
                    "ssh.user",
                    "a login name (no spaces or `@`, not starting with `-`)".into(),
                );
            }
        }
        if self.port == Some(0) {
            push("ssh.port", "a port between 1 and 65535".into());
        }
        for (f, path) in [
            ("ssh.identity_file", &self.identity_file),
            ("ssh.known_hosts", &self.known_hosts),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                push(
                    f,
                    "an absolute path (the run is resumed from its stored copy)".into(),
                );
            }
        }
    }
}

/// Why `s` cannot be passed as one word through a remote shell.
pub fn remote_word_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.chars().any(|c| {
        matches!(
            c,
            '"' | '\'' | '&' | '|' | '<' | '>' | '^' | '%' | '!' | '`' | '$' | ';' | '(' | ')'
        ) || c.is_control()
    }) {
        return Some("must not contain quotes, shell operators or control characters");
    }
    None
}

/// The `routes:` problems, given what is configured.
pub fn route_problems(
    routes: &BTreeMap<String, String>,
    graph_enabled: bool,
    ps: &PowerShellSettings,
) -> Vec<(String, String)> {
    let mut p = Vec::new();
    for (op, to) in routes {
        let at = format!("routes.{op}");
        let Some(kind) = OperationKind::from_name(op) else {
            p.push((at.clone(), format!("{at}: no operation called {op:?}")));
            continue;
        };
        let Some(choice) = RouteChoice::parse(to) else {
            p.push((
                at.clone(),
                format!("{at}: {to:?}: `graph`, `powershell` or `manual`"),
            ));
            continue;
        };
        let info = kind.info();
        let why = match choice {
            RouteChoice::Graph if !GRAPH_OPERATIONS.contains(&kind) => {
                Some("Graph has no API for it (docs/backends.md)".to_string())
            }
            RouteChoice::Graph if !graph_enabled => Some("`graph.enabled` is false".into()),
            RouteChoice::PowerShell => match powershell_part(kind) {
                None => Some("no cmdlet performs it".into()),
                Some(part) if !ps.has(part) => {
                    Some(format!("`powershell.{part}` is not configured"))
                }
                Some(_) => None,
            },
            RouteChoice::Manual if info.observation => {
                Some("a read cannot be a manual task".into())
            }
            _ => None,
        };
        if let Some(why) = why {
            p.push((at.clone(), format!("{at}: {to}: {why}")));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(yaml: &str) -> PowerShellSettings {
        serde_yaml::from_str(yaml).expect("settings")
    }

    #[test]
    fn parts_are_checked() {
        let ok = part("teams: {runner: local, pool: 3}\nonprem: {runner: ssh, ssh: {host: sfb01, user: svc}, script: 'C:\\portflow\\host.ps1', max_moves: 10}\n");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        let bad = part("teams: {runner: ssh, max_moves: 3, env: {CLIENT_SECRET: x}}\nonprem: {runner: ssh, ssh: {host: '-oProxyCommand=x'}, script: 'C:\\a&b.ps1', auth: access_tokens}\n");
        let paths: Vec<String> = bad.problems().into_iter().map(|(p, _)| p).collect();
        for want in [
            "powershell.teams.script",
            "powershell.teams.ssh",
            "powershell.teams.max_moves",
            "powershell.teams.env",
            "powershell.onprem.ssh.host",
            "powershell.onprem.script",
            "powershell.onprem.auth",
        ] {
            assert!(paths.iter().any(|p| p == want), "{want} in {paths:?}");
        }
    }

    #[test]
    fn routes_name_a_part_that_can_do_it() {
        let ps = part("teams: {}\n");
        let routes: BTreeMap<String, String> = [
            ("get_user", "powershell"),
            ("move_user", "powershell"),
            ("get_location", "graph"),
            ("get_number", "manual"),
            ("send_conferencing_info", "manual"),
            ("nope", "graph"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let p = route_problems(&routes, true, &ps);
        let paths: Vec<&str> = p.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            paths,
            [
                "routes.get_location",
                "routes.get_number",
                "routes.move_user",
                "routes.nope"
            ]
        );
    }
}
