//! [`GraphTenant`]: the [`Tenant`] contract over Microsoft Graph v1.0.
//!
//! Automated here (BACKENDS.md table (a)): `get_user`, `get_number`,
//! `assign_number`, `remove_number`, `set_number_location`, `remove_licence`,
//! `grant_voice_routing_policy`. Every other operation is reported as not
//! automated ([`Tenant::automates`] is false), so `plan` and `doctor` say
//! "not available on Graph"; called anyway, it is a fatal error.
//!
//! Writes that Graph runs as long-running operations (`assignNumber`,
//! `unassignNumber`: 202 + `Location`) are polled briefly on the injected
//! clock ([`TenantConfig::lro_budget`]) only to surface immediate failures;
//! still running after that, they return success with
//! `{"operation": <url>, "status": "running"}` and the workflow's wait
//! verifies the number. Action results also carry the `client_request_id` of
//! the write request, for the instance's audit history.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::client::{entity, GraphClient, LogCtx, Reply};
use super::odata;
use super::ops::{self, LroState, Skus};
use crate::backend::{BackendError, Call, ErrorKind, NumberType, Operation, OperationKind, Tenant};

const NUMBERS: &str = "/admin/teams/telephoneNumberManagement/numberAssignments";

/// Knobs of the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantConfig {
    /// How long a write's long-running operation is polled inline (on the
    /// injected clock) before it is left to the workflow's wait.
    pub lro_budget: Duration,
    /// Pause between polls (a longer `Retry-After` on the poll wins).
    pub lro_interval: Duration,
}

impl Default for TenantConfig {
    fn default() -> TenantConfig {
        TenantConfig {
            lro_budget: Duration::from_secs(30),
            lro_interval: Duration::from_secs(2),
        }
    }
}

/// The operations Graph performs (everything else: PowerShell or manual).
pub const AUTOMATED: &[OperationKind] = crate::backend::powershell_config::GRAPH_OPERATIONS;

/// A tenant reached through Microsoft Graph.
pub struct GraphTenant {
    client: GraphClient,
    cfg: TenantConfig,
    /// UPN (lower case) → Entra object id; ids never change.
    ids: Mutex<HashMap<String, String>>,
    /// `subscribedSkus`, read on first need and again on a miss.
    skus: tokio::sync::Mutex<Option<Skus>>,
}

impl std::fmt::Debug for GraphTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphTenant")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

fn log(call: &Call) -> LogCtx<'_> {
    LogCtx {
        key: call.key.as_deref(),
        attempt: call.attempt,
    }
}

fn done(reply: &Reply) -> Value {
    json!({"client_request_id": reply.client_request_id})
}

/// "Telephone Number '…' is not found from tenant '…'" (an operation's
/// `statusDetail` or an error answer).
fn is_gone(e: &BackendError) -> bool {
    matches!(e.kind, ErrorKind::Precondition | ErrorKind::NotFound)
        && e.message.contains("is not found from tenant")
}

impl GraphTenant {
    /// Operations over `client`.
    pub fn new(client: GraphClient, cfg: TenantConfig) -> GraphTenant {
        GraphTenant {
            client,
            cfg,
            ids: Mutex::new(HashMap::new()),
            skus: tokio::sync::Mutex::new(None),
        }
    }

    /// The request layer (for `doctor`'s reads).
    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    fn cached_id(&self, upn: &str) -> Option<String> {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.get(&upn.to_ascii_lowercase()).cloned()
    }

    fn remember_id(&self, upn: &str, id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.insert(upn.to_ascii_lowercase(), id.to_string());
    }

    /// The object id of `upn` (`GET /users/{upn}?$select=id`, cached).
    async fn user_id(&self, upn: &str, call: &Call) -> Result<String, BackendError> {
        if let Some(id) = self.cached_id(upn) {
            return Ok(id);
        }
        let path = format!(
            "{}{}",
            odata::user_path(upn),
            odata::query(&[("$select", "id")])
        );
        let r = self.client.get(&path, log(call)).await?;
        let id = entity(&r.body)
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| BackendError::new(ErrorKind::Fatal, "GET user: the answer has no id"))?
            .to_string();
        self.remember_id(upn, &id);
        Ok(id)
    }

    /// The tenant's SKUs; re-read when `need` (an id or part number) is not
    /// among the cached ones.
    async fn skus(&self, need: &[&str], call: &Call) -> Result<Skus, BackendError> {
        let mut cache = self.skus.lock().await;
        if let Some(s) = cache.as_ref() {
            if need
                .iter()
                .all(|n| s.name(n).is_some() || s.id(n).is_some())
            {
                return Ok(s.clone());
            }
        }
        let items = self.client.get_all("/subscribedSkus", log(call)).await?;
        let s = Skus::from_items(&items);
        *cache = Some(s.clone());
        Ok(s)
    }

    /// The SKUs needed to name `user`'s `assignedLicenses` (none held: none read).
    async fn skus_held_by(&self, user: &Value, call: &Call) -> Result<Skus, BackendError> {
        let held: Vec<&str> = user
            .get("assignedLicenses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("skuId").and_then(Value::as_str))
            .collect();
        if held.is_empty() {
            return Ok(Skus::default());
        }
        self.skus(&held, call).await
    }

    async fn number_rows(&self, number: &str, call: &Call) -> Result<Vec<Value>, BackendError> {
        let path = odata::number_assignment_query(&ops::e164(number));
        self.client.get_all(&path, log(call)).await
    }

    async fn get_user(&self, upn: &str, call: &Call) -> Result<Value, BackendError> {
        let path = format!(
            "{}{}",
            odata::user_path(upn),
            odata::query(&[("$select", ops::USER_SELECT)])
        );
        let user = entity(&self.client.get(&path, log(call)).await?.body).clone();
        let id = user
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| BackendError::new(ErrorKind::Fatal, "GET user: the answer has no id"))?
            .to_string();
        self.remember_id(upn, &id);
        let cfg_path = format!(
            "/admin/teams/userConfigurations/{}",
            odata::path_segment(&id)
        );
        let config = match self.client.get(&cfg_path, log(call)).await {
            Ok(r) => Some(entity(&r.body).clone()),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let skus = self.skus_held_by(&user, call).await?;
        let view = ops::user_view(&user, config.as_ref(), &skus, None);
        // The line's source tells an on-premises (synced) line URI.
        let Some(line) = view["line_uri"].as_str().map(str::to_string) else {
            return Ok(view);
        };
        let rows = self.number_rows(&line, call).await?;
        let source = rows
            .iter()
            .find(|r| {
                r.get("telephoneNumber")
                    .and_then(Value::as_str)
                    .map(ops::e164)
                    == Some(line.clone())
            })
            .and_then(|r| r.get("numberSource").and_then(Value::as_str));
        Ok(ops::user_view(&user, config.as_ref(), &skus, source))
    }

    /// The licences of `upn` and how each reaches them (one request, plus
    /// `subscribedSkus` when a SKU is new): what a PowerShell `get_user`
    /// cannot tell. As `{"licences": [...], "licence_assignments": [...]}`.
    pub async fn licence_paths(&self, upn: &str, call: &Call) -> Result<Value, BackendError> {
        let path = format!(
            "{}{}",
            odata::user_path(upn),
            odata::query(&[("$select", "id,assignedLicenses,licenseAssignmentStates")])
        );
        let user = entity(&self.client.get(&path, log(call)).await?.body).clone();
        let skus = self.skus_held_by(&user, call).await?;
        let view = ops::user_view(&user, None, &skus, None);
        Ok(json!({
            "licences": view["licences"],
            "licence_assignments": view["licence_assignments"],
        }))
    }

    /// After a 202: check the `Location`'s origin, poll briefly, classify a
    /// failure; still running → success with the operation's URL.
    async fn follow(&self, reply: Reply, what: &str, call: &Call) -> Result<Value, BackendError> {
        let crid = reply.client_request_id.clone();
        let Some(location) = reply.header("location").map(str::to_string) else {
            // Accepted without an operation to follow: the wait verifies.
            return Ok(json!({"status": "accepted", "client_request_id": crid}));
        };
        // Before any token goes there.
        let url = self.client.same_origin(&location, what)?;
        let clock = self.client.clock().clone();
        let deadline = clock.now().plus(self.cfg.lro_budget);
        let mut pause = self.cfg.lro_interval;
        let mut status = "running".to_string();
        loop {
            let now = clock.now();
            if now >= deadline {
                break;
            }
            let wake = now.plus(pause);
            clock
                .sleep_until(if wake < deadline { wake } else { deadline })
                .await;
            let r = match self
                .client
                .get_absolute(url.as_str(), what, log(call))
                .await
            {
                Ok(r) => r,
                // Throttled or unavailable: poll again within the budget (a
                // failure seen now is retried; one missed is only found by
                // the workflow's wait, at its timeout).
                Err(e) if matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient) => {
                    pause = e
                        .retry_after()
                        .filter(|d| *d > self.cfg.lro_interval)
                        .unwrap_or(self.cfg.lro_interval);
                    continue;
                }
                Err(e) => {
                    // The write was accepted; a refused poll leaves the
                    // verification to the workflow's wait rather than failing
                    // a write that may have happened.
                    tracing::debug!(key = call.key.as_deref(), attempt = call.attempt,
                        error = %e, "long-running operation poll refused; not polling further");
                    break;
                }
            };
            pause = super::errors::retry_after(&r.headers, clock.now())
                .filter(|d| *d > self.cfg.lro_interval)
                .unwrap_or(self.cfg.lro_interval);
            match ops::lro_state(entity(&r.body)) {
                LroState::Succeeded => {
                    status = "succeeded".into();
                    break;
                }
                LroState::Failed(detail) => {
                    let mut e = ops::lro_failure(detail.as_deref(), what, clock.now());
                    e.message = format!("{} [client-request-id {crid}]", e.message);
                    return Err(e);
                }
                LroState::Pending(s) => status = s,
            }
        }
        if status == "notStarted" || status == "unknownFutureValue" {
            status = "running".into();
        }
        Ok(json!({"operation": url.as_str(), "status": status, "client_request_id": crid}))
    }

    async fn assign_number(
        &self,
        user: &str,
        number: &str,
        nt: NumberType,
        location_id: Option<&str>,
        call: &Call,
    ) -> Result<Value, BackendError> {
        let id = self.user_id(user, call).await?;
        let mut body = json!({
            "telephoneNumber": ops::e164(number),
            "assignmentTargetId": id,
            "numberType": ops::number_type(nt),
            "assignmentCategory": "primary",
        });
        if let Some(l) = location_id.filter(|l| !l.is_empty()) {
            body["locationId"] = json!(l);
        }
        let path = format!("{NUMBERS}/assignNumber");
        let r = self.client.post(&path, &body, log(call)).await?;
        self.follow(r, "assignNumber", call).await
    }

    async fn remove_number(
        &self,
        number: &str,
        nt: NumberType,
        call: &Call,
    ) -> Result<Value, BackendError> {
        let body = json!({
            "telephoneNumber": ops::e164(number),
            "numberType": ops::number_type(nt),
        });
        let path = format!("{NUMBERS}/unassignNumber");
        let outcome = match self.client.post(&path, &body, log(call)).await {
            Ok(r) => self.follow(r, "unassignNumber", call).await,
            Err(e) => Err(e),
        };
        match outcome {
            // Removing a Direct Routing number takes it out of the tenant: a
            // repeat (after a crash, or a retry of a call that went through)
            // finds it gone, which is what the removal wanted.
            Err(e) if is_gone(&e) => {
                tracing::debug!(
                    key = call.key.as_deref(),
                    attempt = call.attempt,
                    "unassignNumber: the number is no longer in the tenant; already removed"
                );
                Ok(json!({"status": "absent"}))
            }
            other => other,
        }
    }

    async fn set_number_location(
        &self,
        number: &str,
        location_id: &str,
        call: &Call,
    ) -> Result<Value, BackendError> {
        let body = json!({"telephoneNumber": ops::e164(number), "locationId": location_id});
        let path = format!("{NUMBERS}/updateNumber");
        let r = self.client.post(&path, &body, log(call)).await?;
        Ok(done(&r))
    }

    async fn remove_licence(
        &self,
        upn: &str,
        sku: &str,
        call: &Call,
    ) -> Result<Value, BackendError> {
        let skus = self.skus(&[sku], call).await?;
        let Some(sku_id) = skus.id(sku).map(str::to_string) else {
            let bundles = skus.containing_plan(sku);
            let why = if bundles.is_empty() {
                format!("the tenant has no subscription with skuPartNumber {sku:?}")
            } else {
                format!(
                    "{sku:?} is a service plan inside {}; disabling a plan inside a bundle \
                     is not automated on Graph",
                    bundles.join(", ")
                )
            };
            return Err(BackendError::new(ErrorKind::Precondition, why));
        };
        let path = format!(
            "{}{}",
            odata::user_path(upn),
            odata::query(&[("$select", "id,assignedLicenses,licenseAssignmentStates")])
        );
        let user = entity(&self.client.get(&path, log(call)).await?.body).clone();
        let Some(id) = user.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Err(BackendError::new(
                ErrorKind::Fatal,
                "GET user: the answer has no id",
            ));
        };
        self.remember_id(upn, &id);
        let same = |v: &Value| {
            v.get("skuId")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(&sku_id))
        };
        let held = user
            .get("assignedLicenses")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(same));
        if !held {
            return Ok(json!({}));
        }
        let states: Vec<&Value> = user
            .get("licenseAssignmentStates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|s| same(s))
            .collect();
        let groups: Vec<String> = states
            .iter()
            .filter_map(|s| s.get("assignedByGroup").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let direct = states.is_empty()
            || states
                .iter()
                .any(|s| s.get("assignedByGroup").is_none_or(Value::is_null));
        if !direct {
            return Err(ops::group_licence(sku, &groups));
        }
        let body = json!({"addLicenses": [], "removeLicenses": [sku_id]});
        let path = format!("{}/assignLicense", odata::user_path(&id));
        let r = self.client.post(&path, &body, log(call)).await?;
        Ok(done(&r))
    }

    async fn grant_policy(
        &self,
        upn: &str,
        policy: Option<&str>,
        call: &Call,
    ) -> Result<Value, BackendError> {
        let id = self.user_id(upn, call).await?;
        let policy = policy.filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("Global"));
        let Some(name) = policy else {
            let body = json!({"value": [{"userId": id, "policyType": ops::OVRP}]});
            let r = self
                .client
                .post(
                    "/admin/teams/policy/userAssignments/unassign",
                    &body,
                    log(call),
                )
                .await?;
            return Ok(done(&r));
        };
        let path = format!(
            "/admin/teams/policy/getPolicyId(type='{}',name={})",
            ops::OVRP,
            odata::path_segment(&odata::literal(name))
        );
        let items = self.client.get_all(&path, log(call)).await?;
        let policy_id = items
            .iter()
            .find_map(|i| i.get("policyId").and_then(Value::as_str))
            .ok_or_else(|| {
                BackendError::new(
                    ErrorKind::Precondition,
                    format!("no {} named {name:?} in the tenant", ops::OVRP),
                )
            })?
            .to_string();
        let body =
            json!({"value": [{"userId": id, "policyType": ops::OVRP, "policyId": policy_id}]});
        let r = self
            .client
            .post(
                "/admin/teams/policy/userAssignments/assign",
                &body,
                log(call),
            )
            .await?;
        Ok(done(&r))
    }
}

#[async_trait]
impl Tenant for GraphTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        match &call.op {
            Operation::GetUser { user } => self.get_user(user, call).await,
            Operation::GetNumber { number } => {
                let rows = self.number_rows(number, call).await?;
                Ok(ops::find_number(&rows, number))
            }
            Operation::AssignNumber {
                user,
                number,
                number_type,
                location_id,
            } => {
                self.assign_number(user, number, *number_type, location_id.as_deref(), call)
                    .await
            }
            Operation::RemoveNumber {
                number,
                number_type,
                ..
            } => self.remove_number(number, *number_type, call).await,
            Operation::SetNumberLocation {
                number,
                location_id,
            } => self.set_number_location(number, location_id, call).await,
            Operation::RemoveLicence { user, sku } => self.remove_licence(user, sku, call).await,
            Operation::GrantVoiceRoutingPolicy { user, policy } => {
                self.grant_policy(user, policy.as_deref(), call)
                    .await
                    .map_err(|e| {
                        if super::permissions::is_policy_type_refused(&e) {
                            // Nothing was changed; say what would do it.
                            BackendError::new(
                                ErrorKind::Precondition,
                                format!(
                                    "not available on Graph in this tenant ({}): needs the \
                                     PowerShell backend (Grant-CsOnlineVoiceRoutingPolicy)",
                                    e.message
                                ),
                            )
                        } else {
                            e
                        }
                    })
            }
            other => Err(BackendError::new(
                ErrorKind::Fatal,
                format!(
                    "{} is not available on the Microsoft Graph backend (needs the \
                     PowerShell backend or a manual step)",
                    other.kind().info().name
                ),
            )),
        }
    }

    fn automates(&self, kind: OperationKind) -> bool {
        AUTOMATED.contains(&kind)
    }

    fn needs(&self, kind: OperationKind) -> Option<&'static str> {
        let info = kind.info();
        (!AUTOMATED.contains(&kind) && info.manual.is_none() && info.cmdlet.is_some())
            .then_some("the PowerShell backend")
    }
}
