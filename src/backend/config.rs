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
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The simulated tenant.
    Sim(SimConfig),
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
        }
    }

    /// Values out of bounds, as (path below `backend`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        match self {
            BackendConfig::Sim(sim) => sim.problems(),
        }
    }

    /// Whether this backend runs on a virtual clock that a run's `time_scale`
    /// may speed up or slow down: only the simulator does; a real tenant's
    /// time is the wall clock.
    pub fn scales_time(&self) -> bool {
        match self {
            BackendConfig::Sim(_) => true,
        }
    }

    /// The run file's `time_scale` checked against this backend.
    pub fn check_time_scale(&self, time_scale: f64) -> Result<(), String> {
        check_time_scale(self.kind(), self.scales_time(), time_scale)
    }
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
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// The message for a secret written inline at `path` (never the value).
pub fn inline_secret(path: &str) -> String {
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
