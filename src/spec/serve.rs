//! Serve files: how `portflow sim serve` presents a simulated tenant as
//! Microsoft Graph and Entra (the app registration, Graph-level faults,
//! long-running operation timing).
//!
//! ```yaml
//! tenant_id: 2f1c0000-0000-4000-8000-000000000001
//! sim: {seed: 7, users: 250, profile: direct_routing}
//! time_scale: 60
//! app:
//!   client_id: 9a3e0000-0000-4000-8000-000000000002
//!   certificate: app-cert.pem
//!   client_secret: {env: SIM_APP_SECRET}
//!   missing_permissions: [TeamsPolicyUserAssign.ReadWrite.All]
//!   token_lifetime: 1h
//! faults: {throttle_rate: 0.03, expire_tokens_after: 30s}
//! lro: {not_started: 1s, running: 4s}
//! ```
//!
//! Every problem is reported as `file:line:col`. A secret written inline is
//! refused before it is parsed, as in run files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::diag::SpecError;
use super::limits::{human_duration, MAX_TIME_SCALE, MIN_TIME_SCALE};
use super::load::{diag, fail, position_map, read, serde_diag};
use crate::backend::sim::SimConfig;
use crate::backend::SecretRef;

/// Shortest and longest access token lifetime.
pub const TOKEN_LIFETIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(24 * 3600));
/// Longest `throttle_retry_after`, `expire_tokens_after` and LRO phase.
pub const MAX_SERVE_DELAY: Duration = Duration::from_secs(24 * 3600);

/// A serve file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// The Entra directory id (GUID) the app signs in to: the token path's tenant.
    pub tenant_id: String,
    /// Seeds the tenant when it has no state yet (a stored tenant keeps its own).
    #[serde(default)]
    pub sim: SimConfig,
    /// Virtual seconds per real second of the tenant's clock.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// The one app registration.
    pub app: ServeApp,
    /// Graph-level faults.
    #[serde(default)]
    pub faults: ServeFaults,
    /// Long-running operation timing.
    #[serde(default)]
    pub lro: ServeLro,
}

/// `app:`: the registered application.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeApp {
    /// Application (client) id, a GUID.
    pub client_id: String,
    /// PEM file with the app's public certificate (relative to the serve
    /// file's directory; absolute after loading).
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The app's client secret, by reference.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Application permissions not consented (absent from the tokens' roles;
    /// requests needing only them get 403).
    #[serde(default)]
    pub missing_permissions: Vec<String>,
    /// Access token lifetime (`expires_in`).
    #[serde(default = "hour", deserialize_with = "crate::clock::duration")]
    pub token_lifetime: Duration,
}

/// `faults:`: see `GraphSimConfig`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFaults {
    /// Share of requests answered 429.
    #[serde(default)]
    pub throttle_rate: f64,
    /// Share of those with `Retry-After`.
    #[serde(default = "one")]
    pub throttle_retry_after_share: f64,
    /// Their `Retry-After` (whole seconds).
    #[serde(default = "two_seconds", deserialize_with = "crate::clock::duration")]
    pub throttle_retry_after: Duration,
    /// Share of requests answered 503.
    #[serde(default)]
    pub unavailable_rate: f64,
    /// Share of number operations that end `failed`.
    #[serde(default)]
    pub lro_failure_rate: f64,
    /// Tokens issued before start + this are refused from then on.
    #[serde(default, deserialize_with = "crate::clock::opt_duration")]
    pub expire_tokens_after: Option<Duration>,
    /// Origin written in operations' `Location` instead of the server's.
    #[serde(default)]
    pub foreign_location: Option<String>,
    /// Bodies shaped like Microsoft's doc examples.
    #[serde(default)]
    pub doc_style_bodies: bool,
    /// Errors with the real error as JSON text in `message`.
    #[serde(default)]
    pub json_in_message_errors: bool,
}

impl Default for ServeFaults {
    fn default() -> ServeFaults {
        ServeFaults {
            throttle_rate: 0.0,
            throttle_retry_after_share: 1.0,
            throttle_retry_after: two_seconds(),
            unavailable_rate: 0.0,
            lro_failure_rate: 0.0,
            expire_tokens_after: None,
            foreign_location: None,
            doc_style_bodies: false,
            json_in_message_errors: false,
        }
    }
}

/// `lro:`: how long an operation stays in each phase, on the tenant's clock.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeLro {
    /// `notStarted` for this long.
    #[serde(default = "one_second", deserialize_with = "crate::clock::duration")]
    pub not_started: Duration,
    /// Then `running` for this long.
    #[serde(default = "four_seconds", deserialize_with = "crate::clock::duration")]
    pub running: Duration,
}

impl Default for ServeLro {
    fn default() -> ServeLro {
        ServeLro {
            not_started: one_second(),
            running: four_seconds(),
        }
    }
}

fn one() -> f64 {
    1.0
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn two_seconds() -> Duration {
    Duration::from_secs(2)
}
fn four_seconds() -> Duration {
    Duration::from_secs(4)
}

/// Keys whose names look like credentials but hold none.
const NOT_SECRETS: &[&str] = &["token_lifetime", "expire_tokens_after"];

impl ServeFile {
    /// Values out of bounds, as (path, message). `permissions` are the names
    /// `missing_permissions` may list.
    pub fn problems(&self, permissions: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |path: &str, msg: String| out.push((path.to_string(), msg));
        if !crate::backend::config::is_guid(&self.tenant_id) {
            bad(
                "tenant_id",
                "tenant_id must be a directory id (GUID), e.g. 2f1c0000-0000-4000-8000-000000000001"
                    .into(),
            );
        }
        if !crate::backend::config::is_guid(&self.app.client_id) {
            bad(
                "app.client_id",
                "app.client_id must be an application id (GUID)".into(),
            );
        }
        if !(MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(&self.time_scale) {
            bad(
                "time_scale",
                format!(
                    "time_scale must be between {MIN_TIME_SCALE} and {MAX_TIME_SCALE} \
                     (virtual seconds per real second), got {}",
                    self.time_scale
                ),
            );
        }
        for (path, msg) in self.sim.problems() {
            bad(&format!("sim.{path}"), format!("sim.{msg}"));
        }
        if self.sim.tenant.is_some() {
            bad(
                "sim.tenant",
                "sim.tenant: the tenant is named by `--name`, not in the serve file".into(),
            );
        }
        if self.app.certificate.is_none() && self.app.client_secret.is_none() {
            bad(
                "app",
                "app: give the app a credential: `certificate: <PEM file>` and/or \
                 `client_secret: {env: VAR}`"
                    .into(),
            );
        }
        let (lo, hi) = TOKEN_LIFETIME_RANGE;
        if !(lo..=hi).contains(&self.app.token_lifetime) {
            bad(
                "app.token_lifetime",
                format!(
                    "app.token_lifetime must be between {} and {}",
                    human_duration(lo),
                    human_duration(hi)
                ),
            );
        }
        for (i, p) in self.app.missing_permissions.iter().enumerate() {
            let path = format!("app.missing_permissions[{i}]");
            if !permissions.contains(&p.as_str()) {
                bad(
                    &path,
                    format!(
                        "{path}: {:?} is not a permission the simulated Graph checks (one of {})",
                        p.chars().take(80).collect::<String>(),
                        permissions.join(", ")
                    ),
                );
            } else if self.app.missing_permissions[..i].contains(p) {
                bad(&path, format!("{path}: {p} is listed twice"));
            }
        }
        let f = &self.faults;
        for (path, v) in [
            ("faults.throttle_rate", f.throttle_rate),
            (
                "faults.throttle_retry_after_share",
                f.throttle_retry_after_share,
            ),
            ("faults.unavailable_rate", f.unavailable_rate),
            ("faults.lro_failure_rate", f.lro_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bad(path, format!("{path} must be between 0 and 1, got {v}"));
            }
        }
        let secs = |path: &str, d: Duration, min: Duration| -> Option<(String, String)> {
            (d < min || d > MAX_SERVE_DELAY).then(|| {
                (
                    path.to_string(),
                    format!(
                        "{path} must be between {} and {}",
                        human_duration(min),
                        human_duration(MAX_SERVE_DELAY)
                    ),
                )
            })
        };
        let one_s = Duration::from_secs(1);
        let delays = [
            secs("faults.throttle_retry_after", f.throttle_retry_after, one_s),
            f.expire_tokens_after
                .and_then(|d| secs("faults.expire_tokens_after", d, one_s)),
            secs("lro.not_started", self.lro.not_started, Duration::ZERO),
            secs("lro.running", self.lro.running, Duration::ZERO),
        ];
        out.extend(delays.into_iter().flatten());
        if let Some(origin) = &f.foreign_location {
            if !is_origin(origin) {
                out.push((
                    "faults.foreign_location".into(),
                    "faults.foreign_location must be an origin such as https://evil.example \
                     (http or https, a host, an optional port, no path)"
                        .into(),
                ));
            }
        }
        out
    }
}

/// `http(s)://host[:port]`, nothing else.
fn is_origin(s: &str) -> bool {
    let s = s.trim_end_matches('/');
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    s.len() <= 200
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// Load and check a serve file; `permissions` are the names
/// `app.missing_permissions` may list. The certificate path comes back
/// absolute (relative ones are read from the file's directory).
pub fn load_serve_file(path: &Path, permissions: &[&str]) -> Result<ServeFile, SpecError> {
    let text = read(path)?;
    let origin = path.display().to_string();
    let (body, map, mut diags) = position_map(&text, &origin)?;
    let secrets = super::load::inline_secrets(&map, &origin, ".", NOT_SECRETS);
    if !secrets.is_empty() {
        // Stop before serde: its messages may quote the value.
        diags.extend(secrets);
        return Err(fail(diags, &origin));
    }
    let mut file: ServeFile = match serde_yaml::from_str(body) {
        Ok(f) => f,
        Err(e) => {
            diags.extend(serde_diag(&e, &map, &origin));
            return Err(fail(diags, &origin));
        }
    };
    for (p, msg) in file.problems(permissions) {
        diags.push(diag(&origin, map.at(&p), msg));
    }
    SpecError::check(diags)?;
    if let Some(cert) = &mut file.app.certificate {
        if cert.is_relative() {
            let base = path.parent().unwrap_or(Path::new(""));
            let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
            *cert = base.join(&*cert);
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERMS: &[&str] = &["User.Read.All", "TeamsPolicyUserAssign.ReadWrite.All"];

    fn load(text: &str) -> Result<ServeFile, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serve.yaml");
        std::fs::write(&path, text).expect("write");
        load_serve_file(&path, PERMS).map_err(|e| {
            e.to_string()
                .replace(&format!("{}", path.display()), "serve.yaml")
        })
    }

    const MINIMAL: &str = "tenant_id: 2f1c0000-0000-4000-8000-000000000001\n\
                           app:\n  client_id: 9a3e0000-0000-4000-8000-000000000002\n  \
                           certificate: app-cert.pem\n";

    #[test]
    fn the_documented_example_loads() {
        let f = load(
            "tenant_id: 2f1c0000-0000-4000-8000-000000000001\n\
             sim: {seed: 7, users: 250, profile: direct_routing}\n\
             time_scale: 60\n\
             app:\n\
             \x20 client_id: 9a3e0000-0000-4000-8000-000000000002\n\
             \x20 certificate: app-cert.pem\n\
             \x20 client_secret: {env: SIM_APP_SECRET}\n\
             \x20 missing_permissions: [TeamsPolicyUserAssign.ReadWrite.All]\n\
             \x20 token_lifetime: 1h\n\
             faults:\n\
             \x20 throttle_rate: 0.03\n\
             \x20 throttle_retry_after_share: 0.5\n\
             \x20 throttle_retry_after: 2s\n\
             \x20 unavailable_rate: 0.02\n\
             \x20 lro_failure_rate: 0.02\n\
             \x20 expire_tokens_after: 30s\n\
             \x20 foreign_location: https://evil.example\n\
             \x20 doc_style_bodies: false\n\
             \x20 json_in_message_errors: false\n\
             lro: {not_started: 1s, running: 4s}\n",
        )
        .expect("loads");
        assert_eq!(f.sim.users, 250);
        assert_eq!(f.time_scale, 60.0);
        assert_eq!(f.faults.expire_tokens_after, Some(Duration::from_secs(30)));
        assert_eq!(
            f.app.client_secret,
            Some(SecretRef::Env("SIM_APP_SECRET".into()))
        );
        let cert = f.app.certificate.expect("cert");
        assert!(
            cert.is_absolute() && cert.ends_with("app-cert.pem"),
            "{cert:?}"
        );
        let m = load(MINIMAL).expect("minimal");
        assert_eq!(m.app.token_lifetime, Duration::from_secs(3600));
        assert_eq!(m.time_scale, 1.0);
    }

    #[test]
    fn problems_are_reported_where_they_are() {
        let cases: &[(&str, &str)] = &[
            ("tenant_id: contoso\napp: {client_id: 9a3e0000-0000-4000-8000-000000000002, certificate: c.pem}\n", "serve.yaml:1:12: tenant_id must be"),
            (&format!("{MINIMAL}time_scale: 0\n"), "serve.yaml:5:13: time_scale must be between"),
            (&format!("{MINIMAL}faults: {{throttle_rate: 2}}\n"), "faults.throttle_rate must be between 0 and 1"),
            (&format!("{MINIMAL}faults: {{expire_tokens_after: 0s}}\n"), "faults.expire_tokens_after must be between"),
            (&format!("{MINIMAL}faults: {{foreign_location: evil}}\n"), "faults.foreign_location must be an origin"),
            (&format!("{MINIMAL}faults: {{surprise: 1}}\n"), "serve.yaml:5:10: faults: unknown field `surprise`"),
            (&format!("{MINIMAL}sim: {{users: 1000000}}\n"), "sim.users: at most"),
            (&format!("{MINIMAL}sim: {{tenant: x}}\n"), "sim.tenant: the tenant is named by `--name`"),
            (&format!("{MINIMAL}lro: {{running: 2d}}\n"), "lro.running must be between"),
            ("tenant_id: 2f1c0000-0000-4000-8000-000000000001\napp: {client_id: 9a3e0000-0000-4000-8000-000000000002}\n", "app: give the app a credential"),
            ("tenant_id: 2f1c0000-0000-4000-8000-000000000001\napp: {client_id: x, certificate: c.pem, token_lifetime: 10s}\n", "app.client_id must be"),
            ("tenant_id: 2f1c0000-0000-4000-8000-000000000001\napp: {client_id: 9a3e0000-0000-4000-8000-000000000002, certificate: c.pem, token_lifetime: 10s}\n", "app.token_lifetime must be between 1m and 24h"),
            ("tenant_id: 2f1c0000-0000-4000-8000-000000000001\napp: {client_id: 9a3e0000-0000-4000-8000-000000000002, certificate: c.pem, missing_permissions: [Mail.Send]}\n", "\"Mail.Send\" is not a permission the simulated Graph checks"),
        ];
        for (text, want) in cases {
            let e = load(text).expect_err(want);
            assert!(e.contains(want), "want {want:?} in:\n{e}");
        }
    }

    #[test]
    fn an_inline_secret_is_refused_without_showing_it() {
        let text = "tenant_id: 2f1c0000-0000-4000-8000-000000000001\n\
                    app:\n  client_id: 9a3e0000-0000-4000-8000-000000000002\n  \
                    client_secret: hunter2-very-secret\n";
        let e = load(text).expect_err("refused");
        assert!(
            e.contains("serve.yaml:4:18: app.client_secret: a secret written inline"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        // Key names with `token` in them that hold no secret are fine.
        assert!(load(&format!("{MINIMAL}faults: {{expire_tokens_after: 30s}}\n")).is_ok());
    }
}
