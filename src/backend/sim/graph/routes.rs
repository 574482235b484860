//! Request parsing, the Graph resources and the long-running operations.

// A refused request's `Err` is the (large) HTTP answer itself.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::odata::{self, Segment};
use super::GraphSim;
use crate::backend::config::is_guid;
use crate::backend::sim::db::{guid, number_key, parse, SimError};
use crate::backend::sim::model::{NumberRecord, UserRecord};
use crate::backend::sim::rng::Key;
use crate::backend::sim::seed::location;
use crate::backend::{
    BackendError, Call, ErrorKind, Homing, NumberType, NumberView, Operation, Tenant, UserView,
};
use crate::clock::Timestamp;

/// Largest request body read.
const MAX_BODY: usize = 1 << 20;
/// Licence SKUs the simulator knows (its own plan names double as part numbers).
const SKUS: &[&str] = &[
    "Teams",
    "MCOProfessional",
    "MCOEV",
    "MCOPSTN1",
    "MCOPSTN2",
    "MCOMEETADD",
];
const OVRP: &str = "OnlineVoiceRoutingPolicy";
const UPGRADE_POLICY: &str = "TeamsUpgradePolicy";
const NUMBERS: &str = "/v1.0/admin/teams/telephoneNumberManagement/numberAssignments";
const OPERATIONS: &str = "/v1.0/admin/teams/telephoneNumberManagement/operations";

/// `graph.longRunningOperationStatus` (v1.0 has no `skipped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LroStatus {
    /// Accepted, not yet picked up.
    NotStarted,
    /// Being worked on.
    Running,
    /// Done.
    Succeeded,
    /// Done, with `statusDetail`.
    Failed,
}

impl LroStatus {
    /// The enum member as Graph writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LroStatus::NotStarted => "notStarted",
            LroStatus::Running => "running",
            LroStatus::Succeeded => "succeeded",
            LroStatus::Failed => "failed",
        }
    }
}

pub(crate) struct Lro {
    created: Timestamp,
    number: String,
    /// `None`: succeeds; `Some(detail)`: fails with it.
    failure: Option<String>,
}

#[derive(Default)]
pub(crate) struct Lros {
    ops: HashMap<String, Lro>,
    /// Policy ids handed out (`getPolicyId`, userConfigurations) → names.
    policies: HashMap<String, String>,
}

/// Per-request context for headers and error bodies.
pub(super) struct Ctx {
    /// The request's sequence number on this server.
    seq: u64,
    request_id: String,
    client_request_id: String,
    date: String,
    include_unknown: bool,
    /// [`super::GraphSimConfig::json_in_message_errors`].
    json_in_message: bool,
}

type Reply = Result<Response, Response>;

impl Ctx {
    fn response(&self, status: StatusCode, body: Option<&Value>) -> Response {
        let mut r = Response::new(match body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        });
        *r.status_mut() = status;
        let h = r.headers_mut();
        if body.is_some() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8",
                ),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert("request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.client_request_id) {
            h.insert("client-request-id", v);
        }
        r
    }

    pub(super) fn json(&self, status: StatusCode, body: Value) -> Response {
        self.response(status, Some(&body))
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        if self.json_in_message && !status.is_success() && status != StatusCode::UNAUTHORIZED {
            // The variant seen on these endpoints: the real error as JSON text.
            let inner = json!({"code": code, "message": message}).to_string();
            return self.plain_error(status, "UnknownError", &inner);
        }
        self.plain_error(status, code, message)
    }

    pub(super) fn plain_error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        self.json(
            status,
            json!({"error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": self.date,
                    "request-id": self.request_id,
                    "client-request-id": self.client_request_id,
                }
            }}),
        )
    }

    fn bad_request(&self, message: &str) -> Response {
        self.error(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn throttled(&self, retry_after: Option<u64>) -> Response {
        let mut r = self.error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
        );
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }

    /// A tenant error as Graph would answer it.
    fn backend(&self, e: &BackendError) -> Response {
        match e.kind {
            ErrorKind::Throttled => {
                self.throttled(e.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1)))
            }
            ErrorKind::Transient => self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                &e.message,
            ),
            ErrorKind::NotFound => self.error(StatusCode::NOT_FOUND, "NotFound", &e.message),
            ErrorKind::Conflict => self.error(StatusCode::CONFLICT, "Conflict", &e.message),
            ErrorKind::Precondition => self.bad_request(&e.message),
            ErrorKind::Auth => self.error(StatusCode::FORBIDDEN, "Forbidden", &e.message),
            ErrorKind::Fatal => self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.message,
            ),
        }
    }

    fn storage(&self, e: &SimError) -> Response {
        self.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &format!("simulated tenant storage failed: {e}"),
        )
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

impl Ctx {
    /// The context of request `n`, answered at `now`.
    pub(super) fn new(sim: &GraphSim, h: &HeaderMap, n: u64, now: Timestamp) -> Ctx {
        let request_id = guid(Key::new(sim.seed()).str("graph-request").int(n));
        Ctx {
            seq: n,
            client_request_id: header_str(h, "client-request-id")
                .filter(|s| !s.is_empty() && s.len() <= 200)
                .map_or_else(|| request_id.clone(), str::to_string),
            request_id,
            date: now.rfc3339(),
            json_in_message: sim.cfg.json_in_message_errors,
            include_unknown: header_str(h, "prefer").is_some_and(|p| {
                p.split(',').any(|x| {
                    x.trim()
                        .eq_ignore_ascii_case("include-unknown-enum-members")
                })
            }),
        }
    }
}

/// Answer one request.
pub(super) async fn dispatch(sim: &GraphSim, req: Request) -> Response {
    let n = sim.next_request();
    let now = sim.now();
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let ctx = Ctx::new(sim, h, n, now);
    if let Err(r) = authenticate(sim, sim.tokens.as_ref(), &ctx, h, now) {
        return r;
    }
    if let Some(r) = injected_fault(sim, &ctx, n, now) {
        return r;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return ctx.bad_request("The request body could not be read."),
    };
    let query = parts.uri.query().unwrap_or("");
    let Some(query) = odata::query_pairs(query) else {
        return ctx.bad_request("The query string is not valid percent-encoded UTF-8.");
    };
    if parts.uri.path() == "/v1.0/$batch" {
        if parts.method != Method::POST {
            return ctx.bad_request("$batch takes POST.");
        }
        return batch(sim, &ctx, &body).await.unwrap_or_else(|e| e);
    }
    let r = route(sim, &ctx, &parts.method, parts.uri.path(), &query, &body).await;
    r.unwrap_or_else(|e| e)
}

/// The Graph-level fault knobs, drawn for request `n` (a `$batch` draws for
/// each of its requests).
fn injected_fault(sim: &GraphSim, ctx: &Ctx, n: u64, now: Timestamp) -> Option<Response> {
    let draw = Key::new(sim.seed())
        .str("graph-fault")
        .int(n)
        .int(now.0 as u64);
    if draw.unit() < sim.cfg.throttle_rate {
        let with = draw.int(3).unit() < sim.cfg.throttle_retry_after_share;
        let secs = sim.cfg.throttle_retry_after.as_secs().max(1);
        return Some(ctx.throttled(with.then_some(secs)));
    }
    if draw.unit2() < sim.cfg.unavailable_rate {
        return Some(ctx.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please try again later.",
        ));
    }
    None
}

/// Most requests in one `$batch` (Graph's limit).
const MAX_BATCH: usize = 20;

/// `POST /v1.0/$batch` (JSON batching): each request is answered as if sent
/// alone, in order (`dependsOn` is not needed: they run one after another),
/// with the same token and its own fault draw.
async fn batch(sim: &GraphSim, ctx: &Ctx, body: &[u8]) -> Reply {
    let m = parse_body(ctx, body)?;
    let Some(Value::Array(reqs)) = m.get("requests") else {
        return Err(ctx.bad_request("The batch body needs a 'requests' array."));
    };
    if reqs.is_empty() || reqs.len() > MAX_BATCH {
        return Err(ctx.bad_request(&format!("A batch holds 1 to {MAX_BATCH} requests.")));
    }
    let mut out = Vec::new();
    for r in reqs {
        let id = r["id"].as_str().unwrap_or_default().to_string();
        let method = r["method"].as_str().unwrap_or_default();
        let url = r["url"].as_str().unwrap_or_default();
        let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
            return Err(ctx.bad_request(&format!("Request '{id}' has no valid method.")));
        };
        if id.is_empty() || url.is_empty() || url.contains("://") {
            return Err(ctx.bad_request(
                "Each batch request needs an 'id', a 'method' and a relative 'url'.",
            ));
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let path = format!("/v1.0/{}", path.trim_start_matches('/'));
        let Some(query) = odata::query_pairs(query) else {
            return Err(ctx.bad_request("A batch request's query is not valid."));
        };
        let sub_body = match r.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(b) => b.to_string().into_bytes(),
        };
        let n = sim.next_request();
        let resp = match injected_fault(sim, ctx, n, sim.now()) {
            Some(f) => f,
            None if path == "/v1.0/$batch" => ctx.bad_request("Batches do not nest."),
            None => route(sim, ctx, &method, &path, &query, &sub_body)
                .await
                .unwrap_or_else(|e| e),
        };
        let status = resp.status().as_u16();
        let mut headers = Map::new();
        for name in [header::LOCATION, header::RETRY_AFTER, header::CONTENT_TYPE] {
            if let Some(v) = resp.headers().get(&name).and_then(|v| v.to_str().ok()) {
                headers.insert(name.as_str().to_string(), Value::String(v.to_string()));
            }
        }
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_BODY * 16)
            .await
            .unwrap_or_default();
        let mut entry = json!({"id": id, "status": status, "headers": headers});
        if !bytes.is_empty() {
            entry["body"] = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        }
        out.push(entry);
    }
    Ok(ctx.json(StatusCode::OK, json!({"responses": out})))
}

/// The bearer token must pass `tokens` and, when tokens issued before
/// [`super::GraphSimConfig::expire_tokens_issued_before`] are refused, be newer.
pub(super) fn authenticate(
    sim: &GraphSim,
    tokens: &dyn super::TokenCheck,
    ctx: &Ctx,
    h: &HeaderMap,
    now: Timestamp,
) -> Result<(), Response> {
    let unauthorized = |code: &str, message: &str| {
        let mut r = ctx.error(StatusCode::UNAUTHORIZED, code, message);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\""),
        );
        r
    };
    let token = header_str(h, "authorization")
        .and_then(|a| {
            let (scheme, t) = a.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(unauthorized(
            "InvalidAuthenticationToken",
            "Access token is empty.",
        ));
    };
    if let Err(r) = tokens.check(token) {
        return Err(unauthorized(&r.code, &r.message));
    }
    if let Some(t) = sim.cfg.expire_tokens_issued_before {
        let old = tokens.issued_at(token).is_some_and(|iat| iat < t);
        if now >= t && old {
            let r = super::Reject::expired();
            return Err(unauthorized(&r.code, &r.message));
        }
    }
    Ok(())
}

async fn route(
    sim: &GraphSim,
    ctx: &Ctx,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Reply {
    let Some(rest) = path.strip_prefix("/v1.0/") else {
        return Err(ctx.bad_request(&format!(
            "Invalid version: the simulator serves /v1.0 only (got '{path}')."
        )));
    };
    let mut segs = Vec::new();
    for raw in rest.split('/') {
        let Some(s) = odata::percent_decode(raw, false) else {
            return Err(ctx.bad_request("The path is not valid percent-encoded UTF-8."));
        };
        segs.push(s);
    }
    let seg_names: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let unknown_segment =
        |s: &str| ctx.bad_request(&format!("Resource not found for the segment '{s}'."));
    let wrong_method = || {
        ctx.error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            &format!("The method {method} is not allowed on this resource."),
        )
    };
    if let Some(any) = permissions(&seg_names, post) {
        if any
            .iter()
            .all(|p| sim.cfg.missing_permissions.iter().any(|m| m == p))
        {
            return Err(ctx.error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "Insufficient permission(s) for the request. API requires any of the \
                     following permission(s): {}.",
                    any.join(",")
                ),
            ));
        }
    }
    match seg_names.as_slice() {
        ["subscribedSkus"] if get => subscribed_skus(sim, ctx),
        [first, tail @ ..] if first.starts_with("users") => {
            let key = match (odata::segment(first), tail.first()) {
                (Some(Segment::Keyed(name, key)), _) if name == "users" => key,
                (Some(Segment::Name(name)), Some(key)) if name == "users" => {
                    if key.starts_with('$') {
                        // `/users/$x@y` is a system segment; the key form is `users('$x@y')`.
                        return Err(unknown_segment(key));
                    }
                    key.to_string()
                }
                _ => return Err(unknown_segment(first)),
            };
            let tail = match odata::segment(first) {
                Some(Segment::Keyed(..)) => tail,
                _ => &tail[1..],
            };
            match tail {
                [] if get => get_user(sim, ctx, &key, query).await,
                ["assignLicense"] if post => assign_license(sim, ctx, &key, body).await,
                [] | ["assignLicense"] => Err(wrong_method()),
                [s, ..] => Err(unknown_segment(s)),
            }
        }
        ["admin", "teams", "userConfigurations", id] if get => {
            user_configuration(sim, ctx, id).await
        }
        ["admin", "teams", seg] if seg.starts_with("userConfigurations(") && get => {
            match odata::segment(seg) {
                Some(Segment::Keyed(_, id)) => user_configuration(sim, ctx, &id).await,
                _ => Err(unknown_segment(seg)),
            }
        }
        ["admin", "teams", "telephoneNumberManagement", "numberAssignments"] if get => {
            list_numbers(sim, ctx, query).await
        }
        ["admin", "teams", "telephoneNumberManagement", "numberAssignments", id] if get => {
            get_number(sim, ctx, id).await
        }
        ["admin", "teams", "telephoneNumberManagement", seg]
            if seg.starts_with("numberAssignments(") && get =>
        {
            match odata::segment(seg) {
                Some(Segment::Keyed(_, id)) => get_number(sim, ctx, &id).await,
                _ => Err(unknown_segment(seg)),
            }
        }
        ["admin", "teams", "telephoneNumberManagement", "numberAssignments", action] if post => {
            match *action {
                "assignNumber" => assign_number(sim, ctx, body).await,
                "unassignNumber" => unassign_number(sim, ctx, body).await,
                "updateNumber" => update_number(sim, ctx, body).await,
                other => Err(unknown_segment(other)),
            }
        }
        ["admin", "teams", "telephoneNumberManagement", "operations", id] if get => {
            get_operation(sim, ctx, id)
        }
        ["admin", "teams", "telephoneNumberManagement", seg]
            if seg.starts_with("operations(") && get =>
        {
            match odata::segment(seg) {
                Some(Segment::Keyed(_, id)) => get_operation(sim, ctx, &id),
                _ => Err(unknown_segment(seg)),
            }
        }
        ["admin", "teams", "policy", seg] if seg.starts_with("getPolicyId(") && get => {
            get_policy_id(sim, ctx, seg)
        }
        ["admin", "teams", "policy", "userAssignments", action] if post => match *action {
            "assign" => assign_policy(sim, ctx, body, true).await,
            "unassign" => assign_policy(sim, ctx, body, false).await,
            other => Err(unknown_segment(other)),
        },
        _ if !get && !post => Err(wrong_method()),
        _ => Err(ctx.error(
            StatusCode::NOT_FOUND,
            "UnknownError",
            &format!("The simulator does not serve '{path}' for {method}."),
        )),
    }
}

/// Every application permission [`permissions`] names: what an app with
/// full consent holds (the roles of `portflow sim serve`'s tokens).
pub(super) const PERMISSIONS: &[&str] = &[
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "LicenseAssignment.Read.All",
    "LicenseAssignment.ReadWrite.All",
    "Organization.Read.All",
    "TeamsPolicyUserAssign.ReadWrite.All",
    "TeamsTelephoneNumber.Read.All",
    "TeamsTelephoneNumber.ReadWrite.All",
    "TeamsUserConfiguration.Read.All",
    "User.Read.All",
    "User.ReadWrite.All",
];

/// The application permissions any one of which admits a request to this
/// path (Graph's "least privileged" lists; read permissions first).
pub(super) fn permissions(segs: &[&str], post: bool) -> Option<&'static [&'static str]> {
    Some(match segs {
        ["subscribedSkus", ..] => &[
            "LicenseAssignment.Read.All",
            "Organization.Read.All",
            "Directory.Read.All",
        ],
        [u, .., "assignLicense"] if u.starts_with("users") => &[
            "LicenseAssignment.ReadWrite.All",
            "User.ReadWrite.All",
            "Directory.ReadWrite.All",
        ],
        [u, ..] if u.starts_with("users") => {
            &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All"]
        }
        ["admin", "teams", u, ..] if u.starts_with("userConfigurations") => {
            &["TeamsUserConfiguration.Read.All"]
        }
        ["admin", "teams", "telephoneNumberManagement", ..] if post => {
            &["TeamsTelephoneNumber.ReadWrite.All"]
        }
        ["admin", "teams", "telephoneNumberManagement", ..] => &[
            "TeamsTelephoneNumber.Read.All",
            "TeamsTelephoneNumber.ReadWrite.All",
        ],
        ["admin", "teams", "policy", ..] => &["TeamsPolicyUserAssign.ReadWrite.All"],
        _ => return None,
    })
}

// ---------------------------------------------------------------- helpers

impl GraphSim {
    pub(super) fn base(&self) -> &str {
        self.cfg.base_url.trim_end_matches('/')
    }

    pub(super) fn context(&self, what: &str) -> String {
        format!("{}/v1.0/$metadata#{what}", self.base())
    }

    pub(super) fn sku_id(&self, sku: &str) -> String {
        guid(Key::new(self.seed()).str("sku").str(sku))
    }

    pub(super) fn sku_of(&self, sku_id: &str) -> Option<&'static str> {
        SKUS.iter()
            .copied()
            .find(|s| self.sku_id(s).eq_ignore_ascii_case(sku_id))
    }

    pub(super) fn policy_id(&self, name: &str) -> String {
        let id = guid(Key::new(self.seed()).str("policy").str(name));
        self.lock_lros()
            .policies
            .insert(id.clone(), name.to_string());
        id
    }

    pub(super) fn lock_lros(&self) -> std::sync::MutexGuard<'_, Lros> {
        self.lros.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The UPN of the user with Entra object id `id`.
    pub(super) fn upn_of(&self, id: &str) -> Result<Option<String>, SimError> {
        let id = id.to_ascii_lowercase();
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = ids.get(&id) {
            return Ok(Some(u.clone()));
        }
        ids.clear();
        self.tenant.shared.db.scan("u/", |k, v| {
            let rec = parse::<UserRecord>(k, v)?;
            let t = rec.cloud.truth();
            ids.insert(t.id.to_ascii_lowercase(), t.upn.clone());
            Ok(())
        })?;
        Ok(ids.get(&id).cloned())
    }

    /// A user key of a path (`{id}` or `{userPrincipalName}`) as a UPN the
    /// tenant knows, or `None` when no user has that id.
    pub(super) fn user_key(&self, key: &str) -> Result<Option<String>, SimError> {
        if is_guid(key) {
            self.upn_of(key)
        } else {
            Ok(Some(key.to_string()))
        }
    }

    async fn observe(&self, op: Operation) -> Result<Value, BackendError> {
        self.tenant.execute(&Call::observation(op)).await
    }

    async fn act(&self, ctx: &Ctx, op: Operation) -> Result<Value, BackendError> {
        let key = format!("graph/{}", ctx.client_request_id);
        self.tenant.execute(&Call::action(op, key, 1)).await
    }

    /// The true (not lagging) row of a number, as the service knows it.
    pub(super) fn number_truth(&self, number: &str) -> Result<Option<NumberView>, SimError> {
        let shared = &self.tenant.shared;
        let Some(mut rec) = shared.db.load::<NumberRecord>(&number_key(number))? else {
            return Ok(None);
        };
        shared.advance_number(&mut rec, self.now());
        Ok(rec.row.truth().clone())
    }
}

fn parse_body(ctx: &Ctx, body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ctx.bad_request("The request body must be a JSON object.")),
    }
}

fn str_field<'a>(
    ctx: &Ctx,
    m: &'a Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<&'a str>, Response> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(ctx.bad_request(&format!(
            "The request body is missing the required property '{name}'."
        ))),
        Some(_) => Err(ctx.bad_request(&format!("The property '{name}' must be a string."))),
    }
}

/// `12061234567` or `+12061234567` → `+12061234567`.
fn e164(s: &str) -> String {
    let s = s.trim();
    if s.starts_with('+') {
        s.to_string()
    } else {
        format!("+{s}")
    }
}

fn number_type(ctx: &Ctx, s: &str) -> Result<NumberType, Response> {
    match s {
        "directRouting" => Ok(NumberType::DirectRouting),
        "callingPlan" => Ok(NumberType::CallingPlan),
        "operatorConnect" => Ok(NumberType::OperatorConnect),
        other => Err(ctx.bad_request(&format!(
            "The value '{other}' is not a valid numberType (directRouting, callingPlan, \
             operatorConnect)."
        ))),
    }
}

fn not_supported(ctx: &Ctx, what: &str) -> Response {
    ctx.bad_request(&format!("{what} is not supported by the simulated tenant."))
}

fn user_not_found(ctx: &Ctx, key: &str) -> Response {
    ctx.error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects \
             are not present."
        ),
    )
}

/// A collection body: `value` array (or, doc style, its first item as an object).
fn collection(sim: &GraphSim, context: String, items: Vec<Value>, next: Option<String>) -> Value {
    let mut m = Map::new();
    m.insert("@odata.context".into(), Value::String(context));
    let value = if sim.cfg.doc_style_bodies && !items.is_empty() {
        items.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    };
    m.insert("value".into(), value);
    if let Some(n) = next {
        m.insert("@odata.nextLink".into(), Value::String(n));
    }
    Value::Object(m)
}

/// An entity body, with `@odata.context` (doc style: wrapped in `value`).
fn entity(sim: &GraphSim, context: String, mut v: Value, doc_wrap: bool) -> Value {
    if doc_wrap && sim.cfg.doc_style_bodies {
        return json!({"@odata.context": context, "value": v});
    }
    if let Value::Object(m) = &mut v {
        m.insert("@odata.context".into(), Value::String(context));
    }
    v
}

// ------------------------------------------------------------------ users

fn user_json(sim: &GraphSim, u: &UserView) -> Value {
    let licences: Vec<Value> = u
        .licences
        .iter()
        .map(|l| json!({"disabledPlans": [], "skuId": sim.sku_id(l)}))
        .collect();
    let plans: Vec<Value> = u
        .licences
        .iter()
        .map(|l| {
            json!({
                "assignedDateTime": sim.tenant.created_at().rfc3339(),
                "capabilityStatus": "Enabled",
                "service": "MicrosoftCommunicationsOnline",
                "servicePlanId": sim.sku_id(l),
            })
        })
        .collect();
    let states: Vec<Value> = u
        .licence_assignments
        .iter()
        .map(|a| {
            json!({
                "skuId": sim.sku_id(&a.sku),
                "assignedByGroup": a.group.as_ref().filter(|_| a.is_group())
                    .map(|g| guid(Key::new(sim.seed()).str("group").str(g))),
                "state": "Active",
                "error": "None",
                "disabledPlans": [],
            })
        })
        .collect();
    json!({
        "id": u.id,
        "userPrincipalName": u.upn,
        "usageLocation": u.usage_location,
        "onPremisesSyncEnabled": if u.dir_synced { Value::Bool(true) } else { Value::Null },
        "assignedLicenses": licences,
        "assignedPlans": plans,
        "licenseAssignmentStates": states,
        "proxyAddresses": [format!("SMTP:{}", u.upn), format!("SIP:{}", u.sip_address)],
    })
}

async fn get_user_view(sim: &GraphSim, ctx: &Ctx, key: &str) -> Result<UserView, Response> {
    let upn = match sim.user_key(key) {
        Ok(Some(u)) => u,
        Ok(None) => return Err(user_not_found(ctx, key)),
        Err(e) => return Err(ctx.storage(&e)),
    };
    match sim.observe(Operation::GetUser { user: upn }).await {
        Ok(v) => serde_json::from_value(v).map_err(|e| {
            ctx.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &format!("simulated tenant answered an unreadable user: {e}"),
            )
        }),
        Err(e) if e.kind == ErrorKind::NotFound => Err(user_not_found(ctx, key)),
        Err(e) => Err(ctx.backend(&e)),
    }
}

async fn get_user(sim: &GraphSim, ctx: &Ctx, key: &str, query: &[(String, String)]) -> Reply {
    let u = get_user_view(sim, ctx, key).await?;
    let mut v = user_json(sim, &u);
    let select = query.iter().find(|(k, _)| k == "$select").map(|(_, s)| s);
    let context = match select {
        Some(sel) => {
            let fields: Vec<&str> = sel.split(',').map(str::trim).collect();
            if let Value::Object(m) = &mut v {
                m.retain(|k, _| fields.contains(&k.as_str()));
            }
            sim.context(&format!("users({})/$entity", fields.join(",")))
        }
        None => sim.context("users/$entity"),
    };
    Ok(ctx.json(StatusCode::OK, entity(sim, context, v, false)))
}

async fn assign_license(sim: &GraphSim, ctx: &Ctx, key: &str, body: &[u8]) -> Reply {
    let m = parse_body(ctx, body)?;
    let (Some(Value::Array(add)), Some(Value::Array(remove))) =
        (m.get("addLicenses"), m.get("removeLicenses"))
    else {
        return Err(
            ctx.bad_request("The request body needs 'addLicenses' and 'removeLicenses' arrays.")
        );
    };
    if !add.is_empty() {
        return Err(not_supported(ctx, "Adding licences"));
    }
    let mut skus = Vec::new();
    for r in remove {
        let id = r.as_str().unwrap_or_default();
        match sim.sku_of(id) {
            Some(s) => skus.push(s),
            None => {
                return Err(ctx.bad_request(&format!(
                    "License {id} does not correspond to a valid company License."
                )))
            }
        }
    }
    let u = get_user_view(sim, ctx, key).await?;
    for sku in skus {
        let op = Operation::RemoveLicence {
            user: u.upn.clone(),
            sku: sku.to_string(),
        };
        if let Err(e) = sim.act(ctx, op).await {
            return Err(ctx.backend(&e));
        }
    }
    let u = get_user_view(sim, ctx, key).await?;
    let context = sim.context("users/$entity");
    Ok(ctx.json(
        StatusCode::OK,
        entity(sim, context, user_json(sim, &u), false),
    ))
}

fn subscribed_skus(sim: &GraphSim, ctx: &Ctx) -> Reply {
    let mut consumed: HashMap<String, u64> = HashMap::new();
    let scanned = sim.tenant.shared.db.scan("u/", |k, v| {
        for l in parse::<UserRecord>(k, v)?.licences {
            *consumed.entry(l).or_insert(0) += 1;
        }
        Ok(())
    });
    if let Err(e) = scanned {
        return Err(ctx.storage(&e));
    }
    let tenant = sim.tenant.tenant_id();
    let users = u64::from(sim.tenant.user_count());
    let items = SKUS
        .iter()
        .map(|s| {
            let id = sim.sku_id(s);
            json!({
                "id": format!("{tenant}_{id}"),
                "accountId": tenant,
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "consumedUnits": consumed.get(*s).copied().unwrap_or(0),
                "prepaidUnits": {"enabled": users + 10, "lockedOut": 0, "suspended": 0, "warning": 0},
                "servicePlans": [{
                    "servicePlanId": id,
                    "servicePlanName": s,
                    "provisioningStatus": "Success",
                    "appliesTo": "User",
                }],
                "skuId": id,
                "skuPartNumber": s,
            })
        })
        .collect();
    Ok(ctx.json(
        StatusCode::OK,
        collection(sim, sim.context("subscribedSkus"), items, None),
    ))
}

// ------------------------------------------------------ userConfigurations

async fn user_configuration(sim: &GraphSim, ctx: &Ctx, id: &str) -> Reply {
    if !is_guid(id) {
        return Err(user_not_found(ctx, id));
    }
    let u = get_user_view(sim, ctx, id).await?;
    let account_type = match u.account_type.as_str() {
        _ if u.homed == Homing::OnPremises => "sfbOnPremUser",
        "User" => "user",
        "SfBOnPremUser" => "sfbOnPremUser",
        "ResourceAccount" => "resourceAccount",
        "Guest" => "guest",
        "IneligibleUser" if ctx.include_unknown => "ineligibleUser",
        "IneligibleUser" => "unknownFutureValue",
        _ => "unknown",
    };
    let numbers: Vec<Value> = u
        .line_uri
        .iter()
        .map(|n| json!({"telephoneNumber": n, "assignmentCategory": "primary"}))
        .collect();
    let assignment = |policy_type: &str, name: &str| {
        json!({
            "policyType": policy_type,
            "policyAssignment": {
                "displayName": name,
                "assignmentType": "direct",
                "policyId": sim.policy_id(name),
                "groupId": null,
            }
        })
    };
    let mut policies: Vec<Value> = u
        .online_voice_routing_policy
        .iter()
        .map(|p| assignment(OVRP, p))
        .collect();
    // UNVERIFIED (docs/backends.md): whether Graph lists TeamsUpgradePolicy here.
    if let Some(p) = upgrade_policy(&u.teams_upgrade_effective_mode) {
        policies.push(assignment(UPGRADE_POLICY, p));
    }
    let v = json!({
        "id": u.id,
        "userPrincipalName": u.upn,
        "tenantId": sim.tenant.tenant_id(),
        "accountType": account_type,
        "isEnterpriseVoiceEnabled": u.enterprise_voice_enabled,
        "featureTypes": u.feature_types,
        "telephoneNumbers": numbers,
        "effectivePolicyAssignments": policies,
        "createdDateTime": sim.tenant.created_at().rfc3339(),
        "modifiedDateTime": sim.tenant.created_at().rfc3339(),
    });
    let context = sim.context("admin/teams/userConfigurations/$entity");
    Ok(ctx.json(StatusCode::OK, entity(sim, context, v, true)))
}

/// The TeamsUpgradePolicy that puts a user in `mode` (`None`: no such mode).
fn upgrade_policy(mode: &str) -> Option<&'static str> {
    Some(match mode {
        "TeamsOnly" => "UpgradeToTeams",
        "Islands" => "Islands",
        "SfBOnly" => "SfBOnly",
        "SfBWithTeamsCollab" => "SfBWithTeamsCollab",
        "SfBWithTeamsCollabAndMeetings" => "SfBWithTeamsCollabAndMeetings",
        _ => return None,
    })
}

// -------------------------------------------------------- numberAssignments

fn number_json(sim: &GraphSim, n: &NumberView) -> Value {
    let civic = n
        .location_id
        .as_deref()
        .and_then(location)
        .map(|l| l.civic_address_id);
    let assigned = n.assigned_pstn_target_id.is_some();
    json!({
        "id": format!(
            "{}|{}",
            guid(Key::new(sim.seed()).str("number-id").str(&n.telephone_number)),
            n.telephone_number
        ),
        "telephoneNumber": n.telephone_number,
        "operatorId": n.pstn_partner_name.as_deref()
            .map(|p| guid(Key::new(sim.seed()).str("operator").str(p))),
        "numberType": odata::camel(n.number_type.as_str()),
        "activationState": odata::camel(&n.activation_state),
        "assignmentCategory": if assigned { Value::from("primary") } else { Value::Null },
        "assignmentStatus": odata::camel(&n.pstn_assignment_status),
        "assignmentTargetId": n.assigned_pstn_target_id,
        "capabilities": ["userAssignment"],
        "city": null,
        "civicAddressId": civic,
        "locationId": n.location_id,
        "networkSiteId": null,
        "isoCountryCode": n.iso_country_code,
        "numberSource": odata::camel(&n.number_source),
        "portInStatus": null,
        "reverseNumberLookupOptions": [],
        "supportedCustomerActions": if n.location_update_supported {
            json!(["locationUpdate"])
        } else {
            json!([])
        },
    })
}

/// Properties `$filter` may compare (Graph: all but `id` and `city`; the
/// simulator: the scalar ones).
const FILTERABLE: &[&str] = &[
    "telephoneNumber",
    "assignmentTargetId",
    "assignmentStatus",
    "numberType",
    "activationState",
    "assignmentCategory",
    "locationId",
    "civicAddressId",
    "isoCountryCode",
    "numberSource",
    "operatorId",
];

async fn list_numbers(sim: &GraphSim, ctx: &Ctx, query: &[(String, String)]) -> Reply {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let conds = match param("$filter") {
        Some(f) => odata::filter(f).map_err(|m| ctx.bad_request(&m))?,
        None => Vec::new(),
    };
    if let Some((p, _)) = conds
        .iter()
        .find(|(p, _)| !FILTERABLE.contains(&p.as_str()))
    {
        return Err(ctx.bad_request(&format!(
            "Invalid filter clause: the property '{p}' cannot be filtered on."
        )));
    }
    let int = |name: &str, default: u64| match param(name) {
        None => Ok(default),
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ctx.bad_request(&format!("Invalid value '{s}' for {name}."))),
    };
    let top = int("$top", 500)?;
    let skip = int("$skip", 0)?;
    if top == 0 || top > 1000 {
        return Err(ctx.bad_request("$top must be between 1 and 1000."));
    }
    let rows: Vec<NumberView> = match conds.iter().find(|(p, _)| p == "telephoneNumber") {
        // One number: the tenant's own read (its lag and faults apply).
        Some((_, number)) => {
            if !number.starts_with('+') {
                Vec::new()
            } else {
                let op = Operation::GetNumber {
                    number: number.clone(),
                };
                let v = sim.observe(op).await.map_err(|e| ctx.backend(&e))?;
                serde_json::from_value::<Option<NumberView>>(v)
                    .ok()
                    .flatten()
                    .filter(|n| &n.telephone_number == number)
                    .into_iter()
                    .collect()
            }
        }
        // The inventory as reads show it now (the same view `get_number` gives).
        None => {
            let shared = &sim.tenant.shared;
            let now = sim.now();
            let mut rows = Vec::new();
            let scanned = shared.db.scan("n/", |k, v| {
                let mut rec = parse::<NumberRecord>(k, v)?;
                shared.advance_number(&mut rec, now);
                if let Some(r) = rec.row.view(now) {
                    rows.push(r.clone());
                }
                Ok(())
            });
            scanned.map_err(|e| ctx.storage(&e))?;
            rows
        }
    };
    let items: Vec<Value> = rows
        .iter()
        .map(|n| number_json(sim, n))
        .filter(|j| {
            conds
                .iter()
                .all(|(p, lit)| j.get(p).and_then(Value::as_str) == Some(lit.as_str()))
        })
        .collect();
    let total = items.len() as u64;
    let page: Vec<Value> = items
        .into_iter()
        .skip(skip as usize)
        .take(top as usize)
        .collect();
    let next = (skip + top < total).then(|| {
        let mut q = Vec::new();
        if let Some(f) = param("$filter") {
            q.push(format!("$filter={}", odata::encode_query_value(f)));
        }
        q.push(format!("$top={top}"));
        q.push(format!("$skip={}", skip + top));
        format!("{}{NUMBERS}?{}", sim.base(), q.join("&"))
    });
    let context = sim.context("admin/teams/telephoneNumberManagement/numberAssignments");
    Ok(ctx.json(StatusCode::OK, collection(sim, context, page, next)))
}

/// `GET …/numberAssignments/{id}`: the id is `<guid>|+E164` (what
/// `resourceLocation` names); the guid must be the number's.
async fn get_number(sim: &GraphSim, ctx: &Ctx, id: &str) -> Reply {
    let not_found = || {
        ctx.error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("The numberAssignment '{id}' was not found."),
        )
    };
    let Some((_, number)) = id.split_once('|') else {
        return Err(not_found());
    };
    let op = Operation::GetNumber {
        number: number.to_string(),
    };
    let v = sim.observe(op).await.map_err(|e| ctx.backend(&e))?;
    let row = serde_json::from_value::<Option<NumberView>>(v)
        .ok()
        .flatten();
    let Some(j) = row.map(|n| number_json(sim, &n)) else {
        return Err(not_found());
    };
    if j["id"].as_str() != Some(id) {
        return Err(not_found());
    }
    let context = sim.context("admin/teams/telephoneNumberManagement/numberAssignments/$entity");
    Ok(ctx.json(StatusCode::OK, entity(sim, context, j, false)))
}

async fn assign_number(sim: &GraphSim, ctx: &Ctx, body: &[u8]) -> Reply {
    let m = parse_body(ctx, body)?;
    let number = e164(str_field(ctx, &m, "telephoneNumber", true)?.unwrap_or_default());
    let target = str_field(ctx, &m, "assignmentTargetId", true)?.unwrap_or_default();
    let nt = number_type(
        ctx,
        str_field(ctx, &m, "numberType", true)?.unwrap_or_default(),
    )?;
    if let Some(c) = str_field(ctx, &m, "assignmentCategory", false)? {
        if c != "primary" {
            return Err(not_supported(ctx, &format!("assignmentCategory '{c}'")));
        }
    }
    let location_id = str_field(ctx, &m, "locationId", false)?
        .filter(|l| !l.is_empty())
        .map(str::to_string);
    let op_id = new_operation_id(sim, ctx, "Assignment");
    let failure = if injected_failure(sim, &op_id) {
        Some("Service is unavailable. Please try again".to_string())
    } else {
        let upn = sim.upn_of(target).map_err(|e| ctx.storage(&e))?;
        match upn {
            None => Some(format!(
                "Management object not found for identity '{target}'"
            )),
            Some(user) => {
                let op = Operation::AssignNumber {
                    user,
                    number: number.clone(),
                    number_type: nt,
                    location_id,
                };
                order_outcome(ctx, sim.act(ctx, op).await)?
            }
        }
    };
    Ok(accepted(sim, ctx, op_id, number, failure))
}

async fn unassign_number(sim: &GraphSim, ctx: &Ctx, body: &[u8]) -> Reply {
    let m = parse_body(ctx, body)?;
    let number = e164(str_field(ctx, &m, "telephoneNumber", true)?.unwrap_or_default());
    let nt = number_type(
        ctx,
        str_field(ctx, &m, "numberType", true)?.unwrap_or_default(),
    )?;
    let op_id = new_operation_id(sim, ctx, "Unassignment");
    let not_found = || {
        Some(format!(
            "Telephone Number '{number}' is not found from tenant '{}'",
            sim.tenant.tenant_id()
        ))
    };
    let failure = if injected_failure(sim, &op_id) {
        Some(format!(
            "We can't unassign {number} right now. Please try again later."
        ))
    } else {
        match sim.number_truth(&number).map_err(|e| ctx.storage(&e))? {
            Some(row) if row.number_type == nt => match row.assigned_pstn_target_id {
                // Already unassigned: nothing to do.
                None => None,
                Some(target) => match sim.upn_of(&target).map_err(|e| ctx.storage(&e))? {
                    None => not_found(),
                    Some(user) => {
                        let op = Operation::RemoveNumber {
                            user,
                            number: number.clone(),
                            number_type: nt,
                        };
                        order_outcome(ctx, sim.act(ctx, op).await)?
                    }
                },
            },
            _ => not_found(),
        }
    };
    Ok(accepted(sim, ctx, op_id, number, failure))
}

/// What an order's operation will end with: throttling, unavailability and
/// storage failures refuse the request itself; the tenant's other errors
/// become the operation's `statusDetail`.
fn order_outcome(ctx: &Ctx, r: Result<Value, BackendError>) -> Result<Option<String>, Response> {
    match r {
        Ok(_) => Ok(None),
        Err(e) if matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient) => {
            Err(ctx.backend(&e))
        }
        Err(e) if e.kind == ErrorKind::Fatal => Err(ctx.backend(&e)),
        Err(e) => Ok(Some(e.message)),
    }
}

fn new_operation_id(sim: &GraphSim, ctx: &Ctx, kind: &str) -> String {
    let g = guid(
        Key::new(sim.seed())
            .str("lro")
            .int(ctx.seq)
            .int(sim.now().0 as u64),
    );
    odata::base64url(format!("{kind}|{g}").as_bytes())
}

fn injected_failure(sim: &GraphSim, op_id: &str) -> bool {
    Key::new(sim.seed()).str("lro-fail").str(op_id).unit() < sim.cfg.lro_failure_rate
}

fn accepted(
    sim: &GraphSim,
    ctx: &Ctx,
    op_id: String,
    number: String,
    failure: Option<String>,
) -> Response {
    let origin = sim
        .cfg
        .foreign_location
        .as_deref()
        .unwrap_or_else(|| sim.base())
        .trim_end_matches('/')
        .to_string();
    let location = format!("{origin}{OPERATIONS}('{op_id}')");
    sim.lock_lros().ops.insert(
        op_id,
        Lro {
            created: sim.now(),
            number,
            failure,
        },
    );
    let mut r = ctx.response(StatusCode::ACCEPTED, None);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn get_operation(sim: &GraphSim, ctx: &Ctx, id: &str) -> Reply {
    let now = sim.now();
    let lros = sim.lock_lros();
    let Some(op) = lros.ops.get(id) else {
        return Err(ctx.error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("The operation '{id}' was not found."),
        ));
    };
    let started = op.created.plus(sim.cfg.lro_not_started);
    let status = if now < started {
        LroStatus::NotStarted
    } else if now < started.plus(sim.cfg.lro_running) {
        LroStatus::Running
    } else if op.failure.is_some() {
        LroStatus::Failed
    } else {
        LroStatus::Succeeded
    };
    let detail = match status {
        LroStatus::Failed => op.failure.clone().map_or(Value::Null, Value::String),
        _ => Value::Null,
    };
    let resource = format!(
        "{}{NUMBERS}('{}|{}')",
        sim.base(),
        guid(Key::new(sim.seed()).str("number-id").str(&op.number)),
        op.number
    );
    let v = json!({
        "id": id,
        "createdDateTime": op.created.rfc3339(),
        "status": status.as_str(),
        "numbers": [{
            "resourceLocation": resource,
            "status": status.as_str(),
            "statusDetail": detail,
        }],
    });
    drop(lros);
    let context = sim.context("admin/teams/telephoneNumberManagement/operations/$entity");
    Ok(ctx.json(StatusCode::OK, entity(sim, context, v, true)))
}

async fn update_number(sim: &GraphSim, ctx: &Ctx, body: &[u8]) -> Reply {
    let m = parse_body(ctx, body)?;
    let number = e164(str_field(ctx, &m, "telephoneNumber", true)?.unwrap_or_default());
    for other in ["networkSiteId", "reverseNumberLookupOptions"] {
        if m.get(other).is_some_and(|v| !v.is_null()) {
            return Err(not_supported(ctx, &format!("Updating '{other}'")));
        }
    }
    let op = match str_field(ctx, &m, "locationId", false)? {
        Some("") => return Err(not_supported(ctx, "Clearing a number's location")),
        Some(l) => Operation::SetNumberLocation {
            number: number.clone(),
            location_id: l.to_string(),
        },
        None => {
            // Nothing to change: the number must still exist.
            let v = sim
                .observe(Operation::GetNumber {
                    number: number.clone(),
                })
                .await
                .map_err(|e| ctx.backend(&e))?;
            if v.is_null() {
                return Err(ctx.error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!(
                        "Telephone Number '{number}' is not found from tenant '{}'",
                        sim.tenant.tenant_id()
                    ),
                ));
            }
            return Ok(ctx.response(StatusCode::NO_CONTENT, None));
        }
    };
    match sim.act(ctx, op).await {
        Ok(_) => Ok(ctx.response(StatusCode::NO_CONTENT, None)),
        Err(e) => Err(ctx.backend(&e)),
    }
}

// ------------------------------------------------------------------ policy

fn get_policy_id(sim: &GraphSim, ctx: &Ctx, seg: &str) -> Reply {
    // getPolicyId(type='…',name='…')
    let args = seg
        .strip_prefix("getPolicyId(")
        .and_then(|s| s.strip_suffix(')'));
    let mut ty = None;
    let mut name = None;
    let mut rest = args.unwrap_or_default();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let Some((lit, after)) = odata::quoted(after) else {
            break;
        };
        match k.trim() {
            "type" => ty = Some(lit),
            "name" => name = Some(lit),
            _ => {}
        }
        rest = after.trim_start_matches(',');
    }
    let (Some(ty), Some(name)) = (ty, name) else {
        return Err(ctx.bad_request("getPolicyId needs type='…' and name='…'."));
    };
    if ty != OVRP {
        return Err(not_supported(ctx, &format!("Policy type '{ty}'")));
    }
    let id = sim.policy_id(&name);
    let items = vec![json!({"name": name, "policyId": id})];
    let context =
        sim.context("Collection(microsoft.graph.teamsAdministration.policyIdentifierDetail)");
    Ok(ctx.json(StatusCode::OK, collection(sim, context, items, None)))
}

async fn assign_policy(sim: &GraphSim, ctx: &Ctx, body: &[u8], assign: bool) -> Reply {
    let m = parse_body(ctx, body)?;
    let Some(Value::Array(entries)) = m.get("value") else {
        return Err(ctx.bad_request("The request body needs a 'value' array."));
    };
    let mut ops = Vec::new();
    for e in entries {
        let Value::Object(e) = e else {
            return Err(ctx.bad_request("Each 'value' entry must be an object."));
        };
        let user_id = str_field(ctx, e, "userId", true)?.unwrap_or_default();
        let ty = str_field(ctx, e, "policyType", true)?.unwrap_or_default();
        if ty != OVRP {
            return Err(not_supported(ctx, &format!("Policy type '{ty}'")));
        }
        let policy = if assign {
            let pid = str_field(ctx, e, "policyId", true)?.unwrap_or_default();
            let name = sim.lock_lros().policies.get(pid).cloned();
            match name {
                Some(n) if n.eq_ignore_ascii_case("Global") => None,
                Some(n) => Some(n),
                None => {
                    return Err(ctx.bad_request(&format!(
                        "The policy id '{pid}' is not known (use getPolicyId)."
                    )))
                }
            }
        } else {
            None
        };
        let user = match sim.upn_of(user_id).map_err(|e| ctx.storage(&e))? {
            Some(u) => u,
            None => return Err(user_not_found(ctx, user_id)),
        };
        ops.push(Operation::GrantVoiceRoutingPolicy { user, policy });
    }
    for op in ops {
        if let Err(e) = sim.act(ctx, op).await {
            return Err(ctx.backend(&e));
        }
    }
    Ok(ctx.response(StatusCode::NO_CONTENT, None))
}
