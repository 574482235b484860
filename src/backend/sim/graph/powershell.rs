//! The simulated tenant's "Teams PowerShell" endpoint, beside its Graph:
//! `POST /portflow-sim/v1/execute` runs one backend [`Call`] on the served
//! tenant, so a test double of the PowerShell host (`portflow-fake-pwsh`)
//! acts on the same tenant as the Graph backend (only the serving process can
//! open it).
//!
//! - Auth: `Authorization: Bearer <token>` for the Skype and Teams Tenant
//!   Admin API ([`super::token::TEAMS_SCOPE`]), checked like Graph's (signature,
//!   expiry, [`super::GraphSimConfig::expire_tokens_issued_before`]); a Graph
//!   token is refused, as Graph refuses this one. 401 bodies are Graph's.
//! - Body: `{"op": <Operation as JSON, {"op": "get_user", "user": …}>, "key":
//!   string | null, "attempt": n}`; anything else is 400.
//! - Answer: 200 `{"ok": true, "result": <value>}` or 200 `{"ok": false,
//!   "error": <BackendError>}` (the tenant's own faults and throttling apply;
//!   Graph's injected 429/503 knobs do not).
//!
//! The simulator ignores `key` and `attempt` (its fault draws are keyed by the
//! operation's subject and a call counter); they are accepted so a client can
//! send what a real backend records.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::routes::{authenticate, Ctx};
use super::{GraphSim, TokenCheck};
use crate::backend::{Call, Operation, Tenant};

/// The endpoint's path.
pub const EXECUTE_PATH: &str = "/portflow-sim/v1/execute";
/// Largest request body read (an operation is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// The request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    op: Operation,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    attempt: u32,
}

/// Answer one request to [`EXECUTE_PATH`]; `tokens` admits Teams tokens.
pub(super) async fn serve(sim: &GraphSim, tokens: &dyn TokenCheck, req: Request) -> Response {
    let n = sim.next_request();
    let now = sim.now();
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(sim, &parts.headers, n, now);
    if let Err(r) = authenticate(sim, tokens, &ctx, &parts.headers, now) {
        return r;
    }
    let bad = |m: &str| ctx.plain_error(StatusCode::BAD_REQUEST, "BadRequest", m);
    if parts.method != axum::http::Method::POST {
        return ctx.plain_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            &format!("{EXECUTE_PATH} takes POST."),
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return bad("The request body could not be read.");
    };
    let body: ExecuteBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return bad(&format!(
            "The body must be {{\"op\": <operation>, \"key\": string|null, \"attempt\": n}}: {e}"
        ))
        }
    };
    let call = Call {
        op: body.op,
        key: body.key,
        attempt: body.attempt,
    };
    let answer = match sim.tenant.execute(&call).await {
        Ok(v) => json!({"ok": true, "result": v}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    ctx.json(StatusCode::OK, answer)
}

#[cfg(test)]
#[path = "powershell_tests.rs"]
mod tests;
