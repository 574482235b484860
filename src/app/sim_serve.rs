//! `portflow sim serve`: a named simulated tenant served over HTTP as
//! Microsoft Graph v1.0 plus its Entra token endpoint, for testing the Graph
//! backend (and `doctor`) end to end without a real tenant.
//!
//! Loopback only (the token endpoint has no TLS). While serving, this process
//! holds the tenant's store; a stop signal closes it cleanly.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::backends::{is_tenant, open_sim};
use super::stop::StopSignals;
use super::{App, Error, Result};
use crate::backend::sim::graph::token::{
    granted_roles, AppRegistration, EntraConfig, EntraSim, RegisteredCertificate,
};
use crate::backend::sim::graph::{permission_names, router_with_token_endpoint, GraphSimConfig};
use crate::backend::sim::SimTenant;
use crate::clock::{wait_real, Clock, ScaledClock, SystemClock, Timestamp};
use crate::spec::ServeFile;

/// The smallest serve file, shown when none is given.
pub const MINIMAL_SERVE_FILE: &str = "tenant_id: 2f1c0000-0000-4000-8000-000000000001\n\
     app:\n  client_id: 9a3e0000-0000-4000-8000-000000000002\n  \
     certificate: app-cert.pem        # the app's public certificate (PEM)\n  \
     # client_secret: {env: SIM_APP_SECRET}";

/// How long open connections get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A bound server, not yet answering: print where it is, then [`Serving::run`].
pub struct Serving {
    /// The tenant's name.
    pub name: String,
    /// The directory id the token path takes.
    pub tenant_id: String,
    /// `http://<bound address>`: the Graph base (and Entra authority) to use.
    pub base_url: String,
    /// `<base_url>/<tenant_id>/oauth2/v2.0/token`.
    pub token_url: String,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tenant: Arc<SimTenant>,
    signals: StopSignals,
}

/// Open tenant `name`, seeding it from the serve file's `sim:` when it has no
/// state, and bind `listen` (a loopback address; port 0 picks one).
pub async fn start(
    app: &App,
    name: &str,
    listen: SocketAddr,
    config: Option<&Path>,
) -> Result<Serving> {
    let Some(config) = config else {
        return Err(Error::input(
            "sim serve needs a serve file (--config): the app registration clients sign in as",
        )
        .hint(format!(
            "a minimal serve.yaml:\n{MINIMAL_SERVE_FILE}\n(docs/backends.md, \"portflow sim serve\")"
        )));
    };
    if !listen.ip().is_loopback() {
        return Err(Error::input(format!(
            "--listen {listen}: sim serve listens on loopback addresses only (127.0.0.1, ::1): \
             it serves a token endpoint without TLS"
        ))
        .hint("use --listen 127.0.0.1:<port>"));
    }
    let file = crate::spec::load_serve_file(config, permission_names())?;
    let origin = config.display();
    let certificate = match &file.app.certificate {
        Some(p) => Some(
            RegisteredCertificate::from_pem_file(p)
                .map_err(|e| Error::input(format!("{origin}: app.certificate: {e}")))?,
        ),
        None => None,
    };
    let secret = match &file.app.client_secret {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| Error::input(format!("{origin}: app.client_secret: {e}")))?,
        ),
        None => None,
    };
    let dir = app.sim_dir(name)?;
    let clock = Arc::new(tenant_clock(&dir, &file)?);
    let tenant = open_sim(&dir, &file.sim, clock.clone())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::runtime(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::runtime(format!("cannot listen on {listen}: {e}")))?;
    let base_url = format!("http://{bound}");
    let entra = EntraSim::new(
        EntraConfig {
            tenant_id: file.tenant_id.clone(),
            app: AppRegistration {
                client_id: file.app.client_id.clone(),
                secret,
                certificate,
            },
            base_url: base_url.clone(),
            roles: granted_roles(&file.app.missing_permissions),
            token_lifetime: file.app.token_lifetime,
        },
        clock.clone(),
    )
    .map_err(|e| Error::runtime(format!("{origin}: {e}")))?
    // Clients sign assertions with real time, whatever the tenant's scale.
    .with_assertion_clock(Arc::new(crate::clock::SystemClock));
    let token_url = entra.token_url();
    let graph = graph_config(&file, base_url.clone(), clock.now());
    let router = router_with_token_endpoint(tenant.clone(), graph, Arc::new(entra));
    Ok(Serving {
        name: name.to_string(),
        tenant_id: file.tenant_id,
        base_url,
        token_url,
        listener,
        router,
        tenant,
        // From here on a stop signal is a clean stop.
        signals: StopSignals::install(),
    })
}

/// The tenant's clock: `time_scale` times real time, starting now or at the
/// instant the tenant already reached if later (its time never goes back).
fn tenant_clock(dir: &Path, file: &ServeFile) -> Result<ScaledClock> {
    let now = SystemClock.now();
    let reached = if is_tenant(dir) {
        // Closed again when dropped here: the server reopens it on its clock.
        open_sim(dir, &file.sim, Arc::new(SystemClock))?.reached()
    } else {
        None
    };
    Ok(ScaledClock {
        real_anchor: now,
        virtual_anchor: reached.filter(|r| *r > now).unwrap_or(now),
        scale: file.time_scale,
    })
}

/// The Graph router's config from the serve file, started at `start`.
fn graph_config(file: &ServeFile, base_url: String, start: Timestamp) -> GraphSimConfig {
    let f = &file.faults;
    GraphSimConfig {
        base_url,
        lro_not_started: file.lro.not_started,
        lro_running: file.lro.running,
        throttle_rate: f.throttle_rate,
        throttle_retry_after_share: f.throttle_retry_after_share,
        throttle_retry_after: f.throttle_retry_after,
        unavailable_rate: f.unavailable_rate,
        // On a whole second: tokens carry `iat` in seconds.
        expire_tokens_issued_before: f.expire_tokens_after.map(|d| {
            let t = start.plus(d).millis();
            Timestamp(t.div_euclid(1000) * 1000 + if t % 1000 == 0 { 0 } else { 1000 })
        }),
        lro_failure_rate: f.lro_failure_rate,
        foreign_location: f
            .foreign_location
            .as_ref()
            .map(|o| o.trim_end_matches('/').to_string()),
        doc_style_bodies: f.doc_style_bodies,
        json_in_message_errors: f.json_in_message_errors,
        missing_permissions: file.app.missing_permissions.clone(),
    }
}

impl Serving {
    /// Answer requests until SIGTERM or Ctrl-C, then close the tenant.
    pub async fn run(self) -> Result<()> {
        let Serving {
            listener,
            router,
            tenant,
            signals,
            ..
        } = self;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = Box::pin(
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        let result = tokio::select! {
            r = &mut server => r,
            _ = signals.wait() => {
                let _ = stop.send(());
                tokio::select! {
                    r = &mut server => r,
                    // A client holding a connection open does not keep us up.
                    _ = wait_real(SHUTDOWN_GRACE) => Ok(()),
                }
            }
        };
        // The router's handle goes with the server; ours is the last one and
        // closing it stores the instant the tenant reached.
        drop(server);
        drop(tenant);
        result.map_err(|e| Error::runtime(format!("sim serve: the server failed: {e}")))
    }
}
