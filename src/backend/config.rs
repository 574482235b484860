//! Backend configuration: the `backend:` block of a run file, and the secret
//! references real backends use for their credentials.
//!
//! A run file's text is pinned into the store and into every backup, so a
//! credential must never be written in it: configs hold a [`SecretRef`] (an
//! environment variable or a file), resolved only when a client is built.
//! [`inline_secret`] names the keys the loader refuses when they hold a plain
//! string.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::sim::SimConfig;

/// Which backend a run talks to (`kind:`).
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The simulated tenant.
    Sim(SimConfig),
    /// A real Microsoft 365 tenant through Microsoft Graph (app-only auth).
    Microsoft(MicrosoftConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::Sim(SimConfig::default())
    }
}

impl BackendConfig {
    /// The `kind:` name.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Sim(_) => "sim",
            BackendConfig::Microsoft(_) => "microsoft",
        }
    }

    /// Values out of bounds, as (path below `backend`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        match self {
            BackendConfig::Sim(sim) => sim.problems(),
            BackendConfig::Microsoft(ms) => ms.problems(),
        }
    }

    /// Whether this backend runs on a virtual clock that a run's `time_scale`
    /// may speed up or slow down: only the simulator does; a real tenant's
    /// time is the wall clock. A `microsoft` backend pointed at a loopback
    /// `portflow sim serve` is a rehearsal, whose tenant runs on virtual time.
    pub fn scales_time(&self) -> bool {
        match self {
            BackendConfig::Sim(_) => true,
            BackendConfig::Microsoft(ms) => ms.graph.base_url.is_some(),
        }
    }

    /// The run file's `time_scale` checked against this backend.
    pub fn check_time_scale(&self, time_scale: f64) -> Result<(), String> {
        check_time_scale(self.kind(), self.scales_time(), time_scale)
    }
}

/// `kind: microsoft`: an Entra app registration with admin-consented
/// application permissions, and where to reach Graph.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MicrosoftConfig {
    /// Entra tenant: a GUID or a domain name (`contoso.onmicrosoft.com`).
    pub tenant_id: String,
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// How the app proves who it is.
    pub credential: CredentialConfig,
    /// `global` (the default). `gcc_high` and `dod` are refused: Graph has no
    /// Teams telephone-number APIs there.
    #[serde(default = "default_cloud")]
    pub cloud: String,
    /// Endpoints and pacing.
    #[serde(default)]
    pub graph: GraphSettings,
    /// The PowerShell hosts (Teams module, Skype for Business Server shell).
    #[serde(default)]
    pub powershell: super::powershell_config::PowerShellSettings,
    /// Operation name → `graph`, `powershell` or `manual`, overriding the
    /// default route (Graph where it can, else PowerShell, else a person).
    #[serde(default)]
    pub routes: std::collections::BTreeMap<String, String>,
}

fn default_cloud() -> String {
    "global".into()
}

/// `credential:` of `kind: microsoft`: exactly one of a certificate or a
/// client secret reference. Paths are absolute: a run is resumed from its
/// stored copy of the run file, possibly from another directory.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// PEM file holding the certificate and its RSA private key.
    pub certificate: Option<PathBuf>,
    /// Signature of the client assertion: `RS256` (default, `x5t`) or
    /// `PS256` (`x5t#S256`).
    pub algorithm: Option<String>,
    /// Environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// File holding the client secret.
    pub client_secret_file: Option<PathBuf>,
}

/// The credential, as one choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialChoice {
    /// A certificate file and the assertion's algorithm name.
    Certificate(PathBuf, String),
    /// A client secret reference.
    Secret(SecretRef),
}

impl CredentialConfig {
    /// The one credential written, or why not.
    pub fn choice(&self) -> Result<CredentialChoice, String> {
        let mut found = Vec::new();
        if let Some(p) = &self.certificate {
            let alg = self.algorithm.clone().unwrap_or_else(|| "RS256".into());
            found.push(CredentialChoice::Certificate(p.clone(), alg));
        }
        if let Some(v) = &self.client_secret_env {
            found.push(CredentialChoice::Secret(SecretRef::Env(v.clone())));
        }
        if let Some(p) = &self.client_secret_file {
            found.push(CredentialChoice::Secret(SecretRef::File(p.clone())));
        }
        match found.len() {
            1 => found.pop().ok_or_else(String::new),
            0 => Err("credential: write one of `certificate: /path/app.pem`, \
                      `client_secret_env: VAR` or `client_secret_file: /path`"
                .into()),
            _ => Err(
                "credential: write only one of `certificate`, `client_secret_env`, \
                      `client_secret_file`"
                    .into(),
            ),
        }
    }
}

/// `graph:` of `kind: microsoft`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    /// `false`: every operation goes to PowerShell or a person (the
    /// credential still signs in, for the hosts' tokens). Default true.
    pub enabled: Option<bool>,
    /// Graph service root instead of `https://graph.microsoft.com`: loopback
    /// hosts only, for rehearsals against `portflow sim serve`.
    pub base_url: Option<String>,
    /// Entra authority instead of `https://login.microsoftonline.com`:
    /// loopback hosts only.
    pub login_url: Option<String>,
    /// Most HTTP requests in flight to this tenant at once (default 8).
    pub max_concurrency: Option<usize>,
    /// Backend calls per second to this tenant, for every run on it (default
    /// [`MICROSOFT_DEFAULT_RATE`]); a run's lower `rate_limit` wins.
    pub rate_limit: Option<f64>,
    /// Timeout of one HTTP request (default 30s).
    #[serde(default, deserialize_with = "crate::clock::opt_duration")]
    #[schemars(with = "Option<crate::spec::schema::DurationText>")]
    pub timeout: Option<std::time::Duration>,
}

/// Default calls per second to a Microsoft tenant (Graph documents no limit
/// for `/admin/teams/*`; this keeps well under the Teams table's figures).
pub const MICROSOFT_DEFAULT_RATE: f64 = 5.0;
/// Most requests in flight per tenant, at most.
pub const MAX_GRAPH_CONCURRENCY: usize = 64;

impl MicrosoftConfig {
    /// Values out of bounds, as (path below `backend`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let guid_or_domain = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && !s.starts_with('.')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        if !guid_or_domain(&self.tenant_id) {
            p.push((
                "tenant_id".into(),
                "tenant_id: a directory (tenant) id GUID or a domain name such as \
                 contoso.onmicrosoft.com"
                    .into(),
            ));
        }
        if !is_guid(&self.client_id) {
            p.push((
                "client_id".into(),
                "client_id: the application (client) id GUID of the app registration".into(),
            ));
        }
        match self.credential.choice() {
            Err(e) => p.push(("credential".into(), e)),
            Ok(CredentialChoice::Certificate(path, alg)) => {
                if !path.is_absolute() {
                    p.push((
                        "credential.certificate".into(),
                        "credential.certificate: an absolute path (the run is resumed from its \
                         stored copy, possibly from another directory)"
                            .into(),
                    ));
                }
                if !matches!(alg.as_str(), "RS256" | "PS256") {
                    p.push((
                        "credential.algorithm".into(),
                        format!("credential.algorithm: {alg:?}: RS256 or PS256"),
                    ));
                }
            }
            Ok(CredentialChoice::Secret(SecretRef::File(path))) if !path.is_absolute() => {
                p.push((
                    "credential.client_secret_file".into(),
                    "credential.client_secret_file: an absolute path".into(),
                ));
            }
            Ok(CredentialChoice::Secret(SecretRef::Env(v)))
                if v.is_empty() || v.contains(['=', '\0']) =>
            {
                p.push((
                    "credential.client_secret_env".into(),
                    "credential.client_secret_env: an environment variable name".into(),
                ));
            }
            Ok(_) => {}
        }
        if self.credential.algorithm.is_some() && self.credential.certificate.is_none() {
            p.push((
                "credential.algorithm".into(),
                "credential.algorithm: only with `certificate`".into(),
            ));
        }
        if let Err(e) = self.endpoint_problem() {
            let at = if e.contains("login_url") {
                "graph.login_url"
            } else if e.contains("base_url") {
                "graph.base_url"
            } else {
                "cloud"
            };
            p.push((at.into(), e));
        }
        if let Some(c) = self.graph.max_concurrency {
            if !(1..=MAX_GRAPH_CONCURRENCY).contains(&c) {
                p.push((
                    "graph.max_concurrency".into(),
                    format!("graph.max_concurrency: between 1 and {MAX_GRAPH_CONCURRENCY}"),
                ));
            }
        }
        if let Some(r) = self.graph.rate_limit {
            if !(r.is_finite() && (0.01..=1000.0).contains(&r)) {
                p.push((
                    "graph.rate_limit".into(),
                    "graph.rate_limit: calls per second, between 0.01 and 1000".into(),
                ));
            }
        }
        p.extend(self.powershell.problems());
        p.extend(super::powershell_config::route_problems(
            &self.routes,
            self.graph.enabled != Some(false),
            &self.powershell,
        ));
        if let Some(t) = self.graph.timeout {
            if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(600))
                .contains(&t)
            {
                p.push((
                    "graph.timeout".into(),
                    "graph.timeout: between 1s and 10m".into(),
                ));
            }
        }
        p
    }

    #[cfg(feature = "graph")]
    fn endpoint_problem(&self) -> Result<(), String> {
        let cloud = super::graph::Cloud::parse(&self.cloud)?;
        super::graph::Endpoints::new(
            cloud,
            self.graph.login_url.as_deref(),
            self.graph.base_url.as_deref(),
        )
        .map(|_| ())
    }

    #[cfg(not(feature = "graph"))]
    fn endpoint_problem(&self) -> Result<(), String> {
        Err("kind: microsoft: this portflow was built without the `graph` feature".into())
    }

    /// The calls-per-second this backend paces a tenant at.
    pub fn rate(&self) -> f64 {
        self.graph.rate_limit.unwrap_or(MICROSOFT_DEFAULT_RATE)
    }
}

/// `8-4-4-4-12` hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `time_scale` other than 1 is only for backends whose time is virtual.
pub fn check_time_scale(kind: &str, scales_time: bool, time_scale: f64) -> Result<(), String> {
    if scales_time || time_scale == 1.0 {
        Ok(())
    } else {
        Err(format!(
            "time_scale: {time_scale} is for the simulator only; a `kind: {kind}` tenant runs \
             in real time (leave time_scale out, or set it to 1)"
        ))
    }
}

/// Key names under `backend:` that hold credentials.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "password",
    "token",
    "private_key",
    "certificate_key",
];

/// Whether a key under `backend:` names a credential (`client_secret`,
/// `password`, `refresh_token`, `private_key_pem`, …).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    // `client_secret_env: VAR` names where the secret is, not the secret.
    if key.ends_with("_env") || key.ends_with("_file") {
        return false;
    }
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// The message for a secret written inline at `path` (never the value).
pub fn inline_secret(path: &str) -> String {
    if path.ends_with("credential.client_secret") {
        return format!(
            "{path}: a secret written inline; write `client_secret_env: VAR` or \
             `client_secret_file: /path` instead: the run file is stored (in the state \
             directory and every backup)"
        );
    }
    format!(
        "{path}: a secret written inline; write a secret reference `{{env: VAR}}` or \
         `{{file: PATH}}` instead: the run file is stored (in the state directory and every backup)"
    )
}

/// Where a secret is found: never the secret itself.
///
/// Written `{env: NAME}` (an environment variable of the process that runs the
/// backend) or `{file: /path}` (a file holding only the secret; one trailing
/// newline is dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "environment variable {name}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Why a [`SecretRef`] could not be resolved. Names the reference, never content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("secret reference: environment variable {0} is not set")]
    EnvMissing(String),
    /// The environment variable is not valid UTF-8.
    #[error("secret reference: environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    /// The file could not be read.
    #[error("secret reference: cannot read file {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("secret reference: file {} is not UTF-8 text", .0.display())]
    FileNotUnicode(PathBuf),
    /// The variable or file is empty.
    #[error("secret reference: {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Read the secret now. Call it where the client is built, not earlier,
    /// and keep the result only as long as the client needs it.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvMissing(name.clone()))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode(name.clone()))
                }
            },
            SecretRef::File(path) => read_secret_file(path)?,
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(Secret(value))
    }
}

fn read_secret_file(path: &Path) -> Result<String, SecretError> {
    let bytes = std::fs::read(path).map_err(|source| SecretError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| SecretError::FileNotUnicode(path.to_path_buf()))?;
    // Editors and `echo` add one; the secret does not have it.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretRef, D::Error> {
        d.deserialize_any(SecretRefVisitor)
    }
}

const SECRET_REF_SHAPE: &str = "a secret reference `{env: VAR}` or `{file: PATH}`";

struct SecretRefVisitor;

impl<'de> Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_REF_SHAPE)
    }

    // A scalar here is most likely the secret itself: refuse it without
    // echoing it (serde's default message would quote the value).
    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
        Err(E::custom(format!(
            "expected {SECRET_REF_SHAPE}, not the secret itself: the run file is stored"
        )))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
        self.visit_str("")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
        self.visit_str("")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
        self.visit_str("")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
        self.visit_str("")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let mut found: Option<SecretRef> = None;
        while let Some(key) = map.next_key::<String>()? {
            let r = match key.as_str() {
                "env" => {
                    let name: String = map.next_value()?;
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(de::Error::custom("env: not an environment variable name"));
                    }
                    SecretRef::Env(name)
                }
                "file" => SecretRef::File(map.next_value()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}`: expected {SECRET_REF_SHAPE}"
                    )))
                }
            };
            if found.replace(r).is_some() {
                return Err(de::Error::custom(format!(
                    "expected {SECRET_REF_SHAPE}, one of them"
                )));
            }
        }
        found.ok_or_else(|| de::Error::custom(format!("expected {SECRET_REF_SHAPE}")))
    }
}

/// A resolved secret. `Debug` and `Display` print `[redacted]`; only
/// [`Secret::expose`] gives the value, to hand to the client that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        client_secret: SecretRef,
    }

    fn parse(yaml: &str) -> Result<SecretRef, String> {
        serde_yaml::from_str::<Holder>(yaml)
            .map(|h| h.client_secret)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn secret_refs_parse_from_env_or_file_only() {
        assert_eq!(
            parse("client_secret: {env: GRAPH_SECRET}"),
            Ok(SecretRef::Env("GRAPH_SECRET".into()))
        );
        assert_eq!(
            parse("client_secret: {file: /run/secrets/graph}"),
            Ok(SecretRef::File("/run/secrets/graph".into()))
        );
        for bad in [
            "client_secret: {env: A, file: /b}",
            "client_secret: {vault: x}",
            "client_secret: {}",
            "client_secret: {env: ''}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_plain_value_is_refused_without_being_repeated() {
        let e = parse("client_secret: hunter2-very-secret")
            .err()
            .unwrap_or_default();
        assert!(e.contains("not the secret itself"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("client_secret: 123456789").err().unwrap_or_default();
        assert!(!e.contains("123456789"), "{e}");
    }

    #[test]
    fn resolution_reads_env_and_file_and_errors_name_the_reference() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let path = dir.path().join("secret");
        assert!(std::fs::write(&path, "s3cr3t-value\n").is_ok());
        let r = SecretRef::File(path.clone());
        let secret = r.resolve().ok();
        assert_eq!(secret.as_ref().map(Secret::expose), Some("s3cr3t-value"));
        // Redacted wherever it is printed.
        let shown = format!(
            "{secret:?} {}",
            secret.as_ref().map(|s| s.to_string()).unwrap_or_default()
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");

        let missing = SecretRef::File(dir.path().join("nope"));
        let e = missing
            .resolve()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("nope") && e.contains("cannot read"), "{e}");

        let unset = SecretRef::Env("PORTFLOW_TEST_SECRET_SURELY_UNSET".into());
        let e = unset
            .resolve()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("PORTFLOW_TEST_SECRET_SURELY_UNSET"), "{e}");

        assert!(std::fs::write(&path, "").is_ok());
        let e = r.resolve().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn secret_like_keys_are_recognised() {
        for k in [
            "client_secret",
            "password",
            "refresh_token",
            "private_key",
            "certificate_key_pem",
            "Client-Secret",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "tenant",
            "seed",
            "users",
            "client_id",
            "certificate_thumbprint",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
        let msg = inline_secret("backend.client_secret");
        assert!(
            msg.contains("{env: VAR}") && msg.contains("stored"),
            "{msg}"
        );
    }

    fn microsoft(yaml: &str) -> Result<MicrosoftConfig, String> {
        match serde_yaml::from_str::<BackendConfig>(yaml) {
            Ok(BackendConfig::Microsoft(m)) => Ok(m),
            Ok(other) => Err(format!("not microsoft: {}", other.kind())),
            Err(e) => Err(e.to_string()),
        }
    }

    const APP: &str = "kind: microsoft\ntenant_id: contoso.onmicrosoft.com\n\
                       client_id: 9a3e0000-0000-4000-8000-000000000002\n";

    #[test]
    fn a_microsoft_backend_takes_one_credential_and_checks_its_endpoints() {
        let ok = microsoft(&format!(
            "{APP}credential: {{certificate: /etc/pf/app.pem}}"
        ))
        .expect("certificate");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert_eq!(
            ok.credential.choice(),
            Ok(CredentialChoice::Certificate(
                "/etc/pf/app.pem".into(),
                "RS256".into()
            ))
        );
        assert!(!BackendConfig::Microsoft(ok.clone()).scales_time());
        assert_eq!(ok.rate(), MICROSOFT_DEFAULT_RATE);
        let env = microsoft(&format!(
            "{APP}credential: {{client_secret_env: PF_SECRET}}"
        ))
        .expect("env");
        assert_eq!(
            env.credential.choice(),
            Ok(CredentialChoice::Secret(SecretRef::Env("PF_SECRET".into())))
        );
        let problems = |extra: &str| {
            microsoft(&format!("{APP}{extra}"))
                .map(|m| m.problems())
                .unwrap_or_else(|e| vec![("parse".into(), e)])
        };
        for (extra, at) in [
            ("credential: {}", "credential"),
            (
                "credential: {certificate: /a.pem, client_secret_env: X}",
                "credential",
            ),
            (
                "credential: {certificate: app.pem}",
                "credential.certificate",
            ),
            (
                "credential: {certificate: /a.pem, algorithm: HS256}",
                "credential.algorithm",
            ),
            (
                "credential: {client_secret_file: s.txt}",
                "credential.client_secret_file",
            ),
            ("credential: {client_secret_env: X}\ncloud: dod", "cloud"),
            (
                "credential: {client_secret_env: X}\ngraph: {base_url: 'https://graph.example'}",
                "graph.base_url",
            ),
            (
                "credential: {client_secret_env: X}\ngraph: {login_url: 'http://10.0.0.1'}",
                "graph.login_url",
            ),
            (
                "credential: {client_secret_env: X}\ngraph: {max_concurrency: 500}",
                "graph.max_concurrency",
            ),
            (
                "credential: {client_secret_env: X}\ngraph: {timeout: 1h}",
                "graph.timeout",
            ),
        ] {
            let p = problems(extra);
            assert!(p.iter().any(|(path, _)| path == at), "{extra}: {p:?}");
        }
        // A loopback simulator is a rehearsal: it may be time-scaled.
        let sim = microsoft(&format!(
            "{APP}credential: {{client_secret_env: X}}\ngraph: {{base_url: 'http://127.0.0.1:8080'}}"
        ))
        .expect("loopback");
        assert!(sim.problems().is_empty(), "{:?}", sim.problems());
        assert!(BackendConfig::Microsoft(sim).scales_time());
        assert!(microsoft(&format!(
            "{APP}credential: {{client_secret_env: X}}\nextra: 1"
        ))
        .is_err());
        assert!(!is_secret_key("client_secret_env") && !is_secret_key("client_secret_file"));
    }

    #[test]
    fn only_a_virtual_time_backend_takes_a_time_scale() {
        assert!(check_time_scale("sim", true, 600.0).is_ok());
        assert!(check_time_scale("graph", false, 1.0).is_ok());
        let e = check_time_scale("graph", false, 600.0)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("simulator only") && e.contains("kind: graph"),
            "{e}"
        );
        assert!(BackendConfig::default().check_time_scale(600.0).is_ok());
    }
}
