//! The simulated tenant speaking Microsoft Graph (test infrastructure).
//!
//! [`router`] serves a [`SimTenant`] with the Graph v1.0 contract of the
//! endpoints the Graph backend uses (BACKENDS.md table (a)): users,
//! userConfigurations, numberAssignments with their actions and long-running
//! operations, assignLicense, subscribedSkus and voice routing policy
//! assignment. Every request that changes or reads the tenant goes through
//! the simulator's own operations, so its audit log, outages, read lag and
//! injected faults stay true; the router only translates.
//!
//! Authentication is a seam: requests need `Authorization: Bearer <token>`,
//! and a [`TokenCheck`] decides ([`MemoryIssuer`] for tests; the real token
//! endpoint plugs in there). [`GraphSimConfig`] adds Graph-level fault knobs
//! (429 with and without `Retry-After`, 503, tokens expiring mid-run, failed
//! long-running operations, a `Location` on a foreign host, the doc examples'
//! body shapes, JSON-in-message errors, missing permissions), drawn
//! deterministically from the tenant's seed where random.
//!
//! `portflow sim serve` serves it, with the token endpoint of [`token`] and
//! the Teams PowerShell endpoint of [`powershell`] (what the test PowerShell
//! host calls).

mod odata;
#[cfg(feature = "graph")]
pub mod powershell;
mod routes;
#[cfg(test)]
mod tests;
#[cfg(feature = "graph")]
pub mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;

use super::rng::Key;
use super::SimTenant;
use crate::clock::Timestamp;

pub use routes::LroStatus;

/// Where Graph lives, as written into `Location`, `@odata.context` and
/// `@odata.nextLink` unless [`GraphSimConfig::base_url`] says otherwise.
pub const GRAPH_BASE: &str = "https://graph.microsoft.com";

/// How the simulated Graph behaves beyond the tenant itself: timing of
/// long-running operations and the fault knobs. Rates are fractions of
/// requests (0 = never, 1 = always), drawn from the tenant's seed and a
/// request counter, so a run with the same requests sees the same faults.
#[derive(Clone, Debug)]
pub struct GraphSimConfig {
    /// Scheme and authority the server is reached at (no trailing `/`), e.g.
    /// `http://127.0.0.1:8443`; used for `Location`, `@odata.nextLink` and
    /// `@odata.context`.
    pub base_url: String,
    /// How long a new long-running operation stays `notStarted`.
    pub lro_not_started: Duration,
    /// How long it then stays `running` before `succeeded` or `failed`.
    pub lro_running: Duration,
    /// Share of requests answered 429 before they reach the tenant.
    pub throttle_rate: f64,
    /// Share of those 429s that carry `Retry-After` (the rest carry none).
    pub throttle_retry_after_share: f64,
    /// The `Retry-After` of an injected 429, in whole seconds.
    pub throttle_retry_after: Duration,
    /// Share of requests answered 503 before they reach the tenant.
    pub unavailable_rate: f64,
    /// Tokens issued before this instant are refused (401, expired) from
    /// that instant on: a token expiring mid-run. Needs a [`TokenCheck`] that
    /// knows when its tokens were issued ([`TokenCheck::issued_at`]).
    pub expire_tokens_issued_before: Option<Timestamp>,
    /// Share of assign/unassign operations that end `failed` with a
    /// `statusDetail` from DOMAIN 1.13 (the tenant is not changed).
    pub lro_failure_rate: f64,
    /// Write `Location` headers on this origin instead of `base_url` (a
    /// client must not send its token there).
    pub foreign_location: Option<String>,
    /// Answer in the shapes of Microsoft's doc examples: a collection's
    /// `value` is an object (its first item) instead of an array, and the
    /// long-running operation and userConfiguration GETs wrap the entity in
    /// `value`.
    pub doc_style_bodies: bool,
    /// Write error bodies (401 aside) as `code: "UnknownError"` with the
    /// real `{"code","message"}` as JSON text in `message`, a variant seen
    /// from these endpoints (BACKENDS.md).
    pub json_in_message_errors: bool,
    /// Application permissions the app lacks: a request that every one of
    /// its admitting permissions is missing for is answered 403 with
    /// Graph's "Insufficient permission(s)" text (what `doctor` reports).
    pub missing_permissions: Vec<String>,
}

impl Default for GraphSimConfig {
    fn default() -> GraphSimConfig {
        GraphSimConfig {
            base_url: GRAPH_BASE.to_string(),
            lro_not_started: Duration::from_secs(1),
            lro_running: Duration::from_secs(4),
            throttle_rate: 0.0,
            throttle_retry_after_share: 1.0,
            throttle_retry_after: Duration::from_secs(2),
            unavailable_rate: 0.0,
            expire_tokens_issued_before: None,
            lro_failure_rate: 0.0,
            foreign_location: None,
            doc_style_bodies: false,
            json_in_message_errors: false,
            missing_permissions: Vec::new(),
        }
    }
}

/// Why a bearer token was refused: a Graph error `code` and `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// e.g. `InvalidAuthenticationToken`.
    pub code: String,
    /// Human text, never the token itself.
    pub message: String,
}

impl Reject {
    /// An `InvalidAuthenticationToken` refusal.
    pub fn invalid(message: impl Into<String>) -> Reject {
        Reject {
            code: "InvalidAuthenticationToken".into(),
            message: message.into(),
        }
    }

    /// The refusal of an expired token.
    pub fn expired() -> Reject {
        Reject::invalid("Lifetime validation failed, the token is expired.")
    }
}

/// Decides whether a bearer token admits a request (the seam where the real
/// token issuer of `portflow sim serve` plugs in).
pub trait TokenCheck: Send + Sync {
    /// `Ok` admits the request; `Err` answers 401 with the reject's code.
    fn check(&self, token: &str) -> Result<(), Reject>;

    /// When the token was issued, if known: lets
    /// [`GraphSimConfig::expire_tokens_issued_before`] refuse older tokens.
    fn issued_at(&self, token: &str) -> Option<Timestamp> {
        let _ = token;
        None
    }
}

/// An in-memory token issuer for tests: opaque random-looking tokens with an
/// expiry on the tenant's clock.
pub struct MemoryIssuer {
    clock: crate::clock::SharedClock,
    seed: u64,
    tokens: Mutex<HashMap<String, (Timestamp, Timestamp)>>,
}

impl MemoryIssuer {
    /// An issuer reading time from `clock`; `seed` varies the token text.
    pub fn new(clock: crate::clock::SharedClock, seed: u64) -> MemoryIssuer {
        MemoryIssuer {
            clock,
            seed,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Timestamp, Timestamp)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new token, valid until `expires_at` (exclusive).
    pub fn issue(&self, expires_at: Timestamp) -> String {
        let mut tokens = self.lock();
        let n = tokens.len() as u64;
        let k = Key::new(self.seed).str("token").int(n);
        let token = format!("simtok.{:016x}{:016x}", k.bits(), k.int(1).bits());
        tokens.insert(token.clone(), (self.clock.now(), expires_at));
        token
    }
}

impl TokenCheck for MemoryIssuer {
    fn check(&self, token: &str) -> Result<(), Reject> {
        match self.lock().get(token) {
            None => Err(Reject::invalid("Access token validation failure.")),
            Some((_, exp)) if self.clock.now() >= *exp => Err(Reject::expired()),
            Some(_) => Ok(()),
        }
    }

    fn issued_at(&self, token: &str) -> Option<Timestamp> {
        self.lock().get(token).map(|(iat, _)| *iat)
    }
}

/// The router's state: the tenant, the config, the token check and the
/// long-running operations (in memory: a restarted server forgets them; the
/// number rows they changed stay in the tenant).
pub(crate) struct GraphSim {
    pub(crate) tenant: Arc<SimTenant>,
    pub(crate) cfg: GraphSimConfig,
    pub(crate) tokens: Arc<dyn TokenCheck>,
    pub(crate) requests: AtomicU64,
    pub(crate) lros: Mutex<routes::Lros>,
    /// Entra object id → UPN (ids never change; rebuilt on a miss).
    pub(crate) ids: Mutex<HashMap<String, String>>,
}

impl GraphSim {
    pub(crate) fn new(
        tenant: Arc<SimTenant>,
        cfg: GraphSimConfig,
        tokens: Arc<dyn TokenCheck>,
    ) -> GraphSim {
        GraphSim {
            tenant,
            cfg,
            tokens,
            requests: AtomicU64::new(0),
            lros: Mutex::new(routes::Lros::default()),
            ids: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.tenant.shared.clock.now()
    }

    pub(crate) fn seed(&self) -> u64 {
        self.tenant.shared.config.seed
    }
}

/// The Graph surface of `tenant`, with `tokens` deciding who may call it.
pub fn router(tenant: Arc<SimTenant>, cfg: GraphSimConfig, tokens: Arc<dyn TokenCheck>) -> Router {
    let sim = Arc::new(GraphSim::new(tenant, cfg, tokens));
    Router::new().fallback(serve).with_state(sim)
}

/// Every application permission the router checks (see
/// [`GraphSimConfig::missing_permissions`]), sorted.
pub fn permission_names() -> &'static [&'static str] {
    routes::PERMISSIONS
}

/// [`router`] with the simulated Entra token endpoint beside it
/// (`POST /{tenant}/oauth2/v2.0/token`, matched before any Graph path) and
/// the Teams PowerShell endpoint ([`powershell::EXECUTE_PATH`]); the
/// endpoint's issuer also checks both surfaces' tokens, each for its own
/// audience.
#[cfg(feature = "graph")]
pub fn router_with_token_endpoint(
    tenant: Arc<SimTenant>,
    cfg: GraphSimConfig,
    entra: Arc<token::EntraSim>,
) -> Router {
    let sim = Arc::new(GraphSim::new(tenant, cfg, entra.clone()));
    let teams = Arc::new(token::TeamsTokens(entra.clone()));
    Router::new()
        .fallback(move |State(sim): State<Arc<GraphSim>>, req: Request| {
            let entra = entra.clone();
            let teams = teams.clone();
            async move {
                let path = req.uri().path();
                if token::EntraSim::is_token_path(path) {
                    entra.serve(req).await
                } else if path == powershell::EXECUTE_PATH {
                    powershell::serve(&sim, teams.as_ref(), req).await
                } else {
                    routes::dispatch(&sim, req).await
                }
            }
        })
        .with_state(sim)
}

/// Every request lands here; [`routes::dispatch`] parses the path itself so
/// that OData key syntax (`users('…')`, `operations('…')`) and encoded
/// characters in UPNs are handled exactly.
async fn serve(State(sim): State<Arc<GraphSim>>, req: Request) -> Response {
    routes::dispatch(&sim, req).await
}
