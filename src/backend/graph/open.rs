//! Building a [`GraphTenant`] from a run file's `kind: microsoft` block: the
//! endpoints, the HTTP client, the credential and the token cache.
//!
//! The certificate is read here (its file must be readable by the process
//! that runs the backend); a client secret is resolved at each token request,
//! so a rotated secret file is picked up without a restart.

use std::sync::Arc;
use std::time::Duration;

use super::auth::{Certificate, Credential, HttpTokenEndpoint, JwtAlg, TokenCache, TokenSource};
use super::client::{ClientConfig, GraphClient, DEFAULT_MAX_CONCURRENCY};
use super::tenant::{GraphTenant, TenantConfig};
use super::{Cloud, Endpoints};
use crate::backend::config::{CredentialChoice, MicrosoftConfig};
use crate::clock::{SharedClock, SystemClock};

/// Timeout of one HTTP request unless `graph.timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the Graph backend could not be built: the config or the credential
/// file (never a secret's content).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

/// What identifies one tenant's client in a process: runs with the same key
/// share it (and its token cache, concurrency cap, rate limiter and
/// PowerShell hosts).
pub fn tenant_key(cfg: &MicrosoftConfig) -> String {
    format!(
        "{}|{}|{}|{}|{:?}|{:?}|{:?}",
        cfg.graph
            .login_url
            .as_deref()
            .unwrap_or(super::GLOBAL_LOGIN),
        cfg.tenant_id.to_ascii_lowercase(),
        cfg.client_id.to_ascii_lowercase(),
        cfg.graph.base_url.as_deref().unwrap_or(super::GLOBAL_GRAPH),
        cfg.graph.enabled,
        cfg.powershell,
        cfg.routes,
    )
}

/// The endpoints `cfg` names (checked again here: a stored run file was
/// validated by an older build, perhaps).
pub fn endpoints(cfg: &MicrosoftConfig) -> Result<Endpoints, OpenError> {
    let cloud = Cloud::parse(&cfg.cloud).map_err(OpenError)?;
    Endpoints::new(
        cloud,
        cfg.graph.login_url.as_deref(),
        cfg.graph.base_url.as_deref(),
    )
    .map_err(OpenError)
}

/// The token cache of `cfg`'s app on its tenant for `scope` (Graph's
/// `endpoints.scope()`, or the Teams admin API for the PowerShell hosts).
pub fn token_cache(
    cfg: &MicrosoftConfig,
    endpoints: &Endpoints,
    http: reqwest::Client,
    clock: SharedClock,
    scope: &str,
) -> Result<TokenCache, OpenError> {
    let token_url = endpoints.token_url(&cfg.tenant_id).map_err(OpenError)?;
    let credential = match cfg.credential.choice().map_err(OpenError)? {
        CredentialChoice::Secret(r) => Credential::Secret(r),
        CredentialChoice::Certificate(path, alg) => {
            let alg = match alg.as_str() {
                "PS256" => JwtAlg::Ps256,
                "RS256" => JwtAlg::Rs256,
                other => {
                    return Err(OpenError(format!(
                        "credential.algorithm {other:?}: RS256 or PS256"
                    )))
                }
            };
            let cert = Certificate::from_pem_file(&path, alg)
                .map_err(|e| OpenError(format!("credential.certificate: {e}")))?;
            Credential::Certificate(Arc::new(cert))
        }
    };
    let source = TokenSource {
        client_id: cfg.client_id.clone(),
        credential,
        token_url: token_url.clone(),
        scope: scope.to_string(),
    };
    let endpoint = Arc::new(HttpTokenEndpoint::new(http, token_url, clock.clone()));
    Ok(TokenCache::new(source, endpoint, clock).with_wall_clock(Arc::new(SystemClock)))
}

/// A [`GraphTenant`] over an HTTP client and token cache built already.
pub fn tenant_over(
    cfg: &MicrosoftConfig,
    endpoints: &Endpoints,
    http: reqwest::Client,
    tokens: Arc<TokenCache>,
    clock: SharedClock,
) -> Result<GraphTenant, OpenError> {
    let client = GraphClient::new(
        endpoints,
        http,
        tokens,
        clock,
        &ClientConfig {
            max_concurrency: cfg.graph.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            ..ClientConfig::default()
        },
    )
    .map_err(OpenError)?;
    Ok(GraphTenant::new(client, TenantConfig::default()))
}
