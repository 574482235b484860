//! How a host process is started: `local` (PowerShell on this machine, the
//! script written to a private file) or `ssh` (the same script on a Windows
//! admin box, started over SSH stdio).
//!
//! The child gets a cleared environment (a short allowlist plus the part's
//! configured `env`), so a client secret in portflow's environment never
//! reaches it, and its command line holds no secret: tokens travel over stdin.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{script_sha256, HOST_SCRIPT};

/// Variables passed through from portflow's environment to the host.
const PASS_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SystemRoot",
    "windir",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "ProgramFiles",
    "ProgramData",
    "PSModulePath",
    // ssh-agent's socket (a path, not a key) for key-based SSH.
    "SSH_AUTH_SOCK",
];

/// PowerShell's switches for an unattended host: no banner, no profile, no
/// prompts (a prompt becomes an error instead of a hang).
pub const PWSH_ARGS: &[&str] = &[
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-File",
];

/// The command that starts one host process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCommand {
    /// Executable.
    pub program: PathBuf,
    /// Arguments (never a secret).
    pub args: Vec<String>,
    /// The child's whole environment.
    pub env: Vec<(String, String)>,
    /// For messages: `local pwsh`, `ssh admin01`.
    pub label: String,
}

impl HostCommand {
    /// PowerShell on this machine running `script`.
    pub fn local(program: &Path, script: &Path, extra_env: &[(String, String)]) -> HostCommand {
        let mut args: Vec<String> = PWSH_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(script.display().to_string());
        HostCommand {
            program: program.to_path_buf(),
            args,
            env: child_env(extra_env),
            label: format!("local {}", program.display()),
        }
    }

    /// `ssh` to `target`, running `program -File script` there.
    pub fn ssh(
        ssh: &SshTarget,
        program: &str,
        script: &str,
        extra_env: &[(String, String)],
    ) -> HostCommand {
        let mut args: Vec<String> = vec![
            "-T".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ServerAliveInterval=30".into(),
            "-o".into(),
            "ServerAliveCountMax=4".into(),
        ];
        if let Some(k) = &ssh.known_hosts {
            args.extend([
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile={}", k.display()),
            ]);
        }
        if let Some(i) = &ssh.identity_file {
            args.extend([
                "-i".into(),
                i.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if let Some(p) = ssh.port {
            args.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &ssh.user {
            args.extend(["-l".into(), u.clone()]);
        }
        args.push("--".into());
        args.push(ssh.host.clone());
        // The remote side joins these with spaces (cmd.exe on Windows
        // OpenSSH): paths are checked at load to need no more than quotes.
        args.push(quote_remote(program));
        args.extend(PWSH_ARGS.iter().map(|s| s.to_string()));
        args.push(quote_remote(script));
        HostCommand {
            program: ssh.program.clone(),
            args,
            env: child_env(extra_env),
            label: format!("ssh {}", ssh.host),
        }
    }

    /// A `tokio` command for it: piped stdio, killed when dropped.
    pub fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

/// Where an `ssh` runner connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// The ssh client (default `ssh`).
    pub program: PathBuf,
    /// Host name or address.
    pub host: String,
    /// Login name.
    pub user: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Private key file.
    pub identity_file: Option<PathBuf>,
    /// Known-hosts file (then host keys are checked strictly).
    pub known_hosts: Option<PathBuf>,
}

fn child_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PASS_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    for (k, v) in extra {
        env.retain(|(have, _)| have != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

fn quote_remote(s: &str) -> String {
    if s.contains(' ') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// Write the host script to a private file for the local runner and return
/// its path: `<temp>/portflow-<uid>/host-<sha>.ps1`, reused while it holds
/// exactly this build's script.
pub fn install_local_script() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("portflow-{}", uid()));
    install_script_in(&dir)
}

/// [`install_local_script`] into `dir`.
pub fn install_script_in(dir: &Path) -> Result<PathBuf, String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create", e))?;
    private_dir(dir)?;
    let sha = script_sha256();
    let path = dir.join(format!("host-{}.ps1", &sha[..16]));
    if std::fs::read(&path).ok().as_deref() == Some(HOST_SCRIPT.as_bytes()) {
        return Ok(path);
    }
    let tmp = dir.join(format!("host-{}.ps1.tmp{}", &sha[..16], std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(HOST_SCRIPT.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| format!("cannot write the host script {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(unix)]
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(not(unix))]
fn uid() -> u32 {
    0
}

/// The directory must be ours and closed to others (another local user
/// could otherwise swap the script between writing and running it).
#[cfg(unix)]
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid() {
        return Err(format!(
            "{} is not a directory owned by this user: refusing to run a script from it",
            dir.display()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_dir(_dir: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_reaches_the_child_environment() {
        let cmd = HostCommand::local(
            Path::new("pwsh"),
            Path::new("/tmp/host.ps1"),
            &[("PSModulePath".into(), "/opt/modules".into())],
        );
        assert_eq!(cmd.args.last().map(String::as_str), Some("/tmp/host.ps1"));
        assert!(cmd.args.iter().any(|a| a == "-NonInteractive"));
        for (k, _) in &cmd.env {
            assert!(PASS_ENV.contains(&k.as_str()), "{k}");
        }
        assert!(cmd
            .env
            .iter()
            .any(|(k, v)| k == "PSModulePath" && v == "/opt/modules"));
    }

    #[test]
    fn ssh_runs_the_same_script_remotely() {
        let target = SshTarget {
            program: "ssh".into(),
            host: "admin01.corp.contoso.com".into(),
            user: Some("svc-portflow".into()),
            port: Some(2222),
            identity_file: Some("/etc/portflow/id_ed25519".into()),
            known_hosts: Some("/etc/portflow/known_hosts".into()),
        };
        let cmd = HostCommand::ssh(
            &target,
            "powershell.exe",
            "C:\\Program Files\\portflow\\host.ps1",
            &[],
        );
        let line = cmd.args.join(" ");
        assert!(
            line.contains("BatchMode=yes") && line.contains("StrictHostKeyChecking=yes"),
            "{line}"
        );
        assert!(
            line.contains("-- admin01.corp.contoso.com powershell.exe -NoLogo"),
            "{line}"
        );
        assert!(
            line.ends_with("-File \"C:\\Program Files\\portflow\\host.ps1\""),
            "{line}"
        );
        use crate::backend::powershell_config::remote_word_problem;
        assert_eq!(remote_word_problem("C:\\portflow\\host.ps1"), None);
        for bad in ["a&b", "x\"y", "$(x)", "a;b", ""] {
            assert!(remote_word_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn the_local_script_is_private_and_exact() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = d.path().join("pf");
        let p = install_script_in(&dir).expect("install");
        assert_eq!(std::fs::read(&p).expect("read"), HOST_SCRIPT.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        // A tampered copy is replaced.
        std::fs::write(&p, b"Invoke-Expression $x").expect("tamper");
        let again = install_script_in(&dir).expect("reinstall");
        assert_eq!(std::fs::read(&again).expect("read"), HOST_SCRIPT.as_bytes());
    }
}
