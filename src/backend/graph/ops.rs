//! Graph bodies ↔ the engine's views: pure functions, no I/O.
//!
//! Observations return the same JSON shapes as the simulator's own
//! [`crate::backend::Tenant`] ([`crate::backend::UserView`],
//! [`crate::backend::NumberView`]); fields Graph cannot give are `null`
//! (each documented on the function that builds the view).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::backend::{BackendError, ErrorKind, LicenceAssignment, NumberType};

/// The policy type of voice routing policies in the policy assignment API.
pub const OVRP: &str = "OnlineVoiceRoutingPolicy";

/// Graph's camelCase enum member → the PascalCase the cmdlets and views use
/// (`directRouting` → `DirectRouting`, `onPremises` → `OnPremises`). Unknown
/// members pass through the same way: they are data, not errors.
pub fn pascal(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A [`NumberType`] as Graph writes it.
pub fn number_type(t: NumberType) -> &'static str {
    match t {
        NumberType::DirectRouting => "directRouting",
        NumberType::CallingPlan => "callingPlan",
        NumberType::OperatorConnect => "operatorConnect",
    }
}

/// `tel:+1…` or `12061234567` → `+1…`.
pub fn e164(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("tel:")
        .or_else(|| s.strip_prefix("TEL:"))
        .unwrap_or(s);
    if s.starts_with('+') {
        s.to_string()
    } else {
        format!("+{s}")
    }
}

fn str_of(v: &Value, k: &str) -> Value {
    match v.get(k) {
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// SKU ids ↔ part numbers, from `GET /subscribedSkus`.
#[derive(Clone, Debug, Default)]
pub struct Skus {
    by_id: HashMap<String, String>,
    by_name: HashMap<String, String>,
    /// Service plan name → the part numbers of SKUs containing it.
    plans: HashMap<String, Vec<String>>,
}

impl Skus {
    /// Read the items of `subscribedSkus`.
    pub fn from_items(items: &[Value]) -> Skus {
        let mut s = Skus::default();
        for i in items {
            let (Some(id), Some(name)) = (
                i.get("skuId").and_then(Value::as_str),
                i.get("skuPartNumber").and_then(Value::as_str),
            ) else {
                continue;
            };
            s.by_id.insert(id.to_ascii_lowercase(), name.to_string());
            s.by_name.insert(name.to_ascii_lowercase(), id.to_string());
            for p in i
                .get("servicePlans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(pn) = p.get("servicePlanName").and_then(Value::as_str) {
                    s.plans
                        .entry(pn.to_ascii_lowercase())
                        .or_default()
                        .push(name.to_string());
                }
            }
        }
        s
    }

    /// The part number of a SKU id.
    pub fn name(&self, id: &str) -> Option<&str> {
        self.by_id.get(&id.to_ascii_lowercase()).map(String::as_str)
    }

    /// The SKU id of a part number (case-insensitive).
    pub fn id(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The SKUs that contain a service plan called `plan`.
    pub fn containing_plan(&self, plan: &str) -> &[String] {
        self.plans
            .get(&plan.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }
}

/// The `$select` of the user read.
pub const USER_SELECT: &str = "id,userPrincipalName,usageLocation,onPremisesSyncEnabled,\
assignedLicenses,assignedPlans,licenseAssignmentStates,proxyAddresses";

/// `get_user`'s view from `GET /users/{upn}` (`user`) and
/// `GET /admin/teams/userConfigurations/{id}` (`config`, `None` when the user
/// has none, e.g. no Teams licence), as [`crate::backend::UserView`] JSON.
///
/// From Graph:
/// - `id`, `upn` (`userPrincipalName`), `usage_location`, `dir_synced`
///   (`onPremisesSyncEnabled == true`), `enterprise_voice_enabled`
///   (`isEnterpriseVoiceEnabled`), `feature_types`.
/// - `licences`: `assignedLicenses[].skuId` as part numbers (`subscribedSkus`);
///   an id the tenant does not list is kept as the id.
/// - `licence_assignments`: one per `licenseAssignmentStates` entry; `group`
///   is the group's **object id** (`assignedByGroup`): Graph gives no display
///   name without another read.
///
/// Derived:
/// - `sip_address`: the `SIP:` entry of `proxyAddresses`; `null` without one.
/// - `line_uri`: the `primary` (else first) entry of `telephoneNumbers`.
/// - `online_voice_routing_policy`: the `displayName` of the effective
///   `OnlineVoiceRoutingPolicy` assignment; none or `Global` → `null` (Global).
/// - `account_type`: `accountType` in PascalCase (`user` → `User`,
///   `sfbOnPremUser` → `SfBOnPremUser`); `unknownFutureValue` → `null`.
/// - `homed`: `OnPremises` when `accountType` is `sfbOnPremUser`, `Online` for
///   `user`, `resourceAccount` and `guest`; `null` otherwise (an ineligible
///   user's homing is not told).
/// - `on_prem_line_uri`: the line number when its number assignment's
///   `numberSource` is `onPremises` (`line_source`), `null` otherwise: Graph
///   has no on-premises line URI, so "none" cannot be told from "unknown".
///
/// - `teams_upgrade_effective_mode`: from the `TeamsUpgradePolicy` effective
///   assignment (`UpgradeToTeams` → `TeamsOnly`, `Islands`/`Global` →
///   `Islands`, `SfB…` → itself without `WithNotify`); absent → `null`.
///   UNVERIFIED: that Graph lists this policy type there (docs/backends.md).
///
/// Always `null` (not in Graph v1.0): `hosting_provider`,
/// `interpreted_user_type`, `hosted_voicemail`.
pub fn user_view(
    user: &Value,
    config: Option<&Value>,
    skus: &Skus,
    line_source: Option<&str>,
) -> Value {
    let sip = user
        .get("proxyAddresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|p| {
            p.get(..4)
                .filter(|pre| pre.eq_ignore_ascii_case("sip:"))
                .map(|_| p[4..].to_string())
        });
    let licences: Vec<String> = user
        .get("assignedLicenses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("skuId").and_then(Value::as_str))
        .map(|id| skus.name(id).unwrap_or(id).to_string())
        .collect();
    let assignments: Vec<LicenceAssignment> = user
        .get("licenseAssignmentStates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let id = s.get("skuId").and_then(Value::as_str)?;
            let sku = skus.name(id).unwrap_or(id);
            Some(match s.get("assignedByGroup").and_then(Value::as_str) {
                Some(g) => LicenceAssignment::via_group(sku, g),
                None => LicenceAssignment::direct(sku),
            })
        })
        .collect();
    let null = Value::Null;
    let cfg = config.unwrap_or(&null);
    let account = cfg.get("accountType").and_then(Value::as_str);
    let homed = match account {
        Some("sfbOnPremUser") => json!("OnPremises"),
        Some("user" | "resourceAccount" | "guest") => json!("Online"),
        _ => Value::Null,
    };
    let account_type = match account {
        None | Some("unknownFutureValue" | "unknown") => Value::Null,
        Some("sfbOnPremUser") => json!("SfBOnPremUser"),
        Some(a) => json!(pascal(a)),
    };
    let numbers: Vec<&Value> = cfg
        .get("telephoneNumbers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let line = numbers
        .iter()
        .find(|n| n.get("assignmentCategory").and_then(Value::as_str) == Some("primary"))
        .or(numbers.first())
        .and_then(|n| n.get("telephoneNumber").and_then(Value::as_str))
        .map(e164);
    let policy = cfg
        .get("effectivePolicyAssignments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("policyType").and_then(Value::as_str) == Some(OVRP))
        .and_then(|p| p["policyAssignment"]["displayName"].as_str())
        .filter(|n| !n.eq_ignore_ascii_case("Global"))
        .map(str::to_string);
    let upgrade_mode = cfg
        .get("effectivePolicyAssignments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("policyType").and_then(Value::as_str) == Some("TeamsUpgradePolicy"))
        .and_then(|p| p["policyAssignment"]["displayName"].as_str())
        .and_then(upgrade_mode);
    let on_prem_line = match (&line, line_source) {
        (Some(l), Some("onPremises")) => json!(l),
        _ => Value::Null,
    };
    json!({
        "id": str_of(user, "id"),
        "upn": str_of(user, "userPrincipalName"),
        "sip_address": sip,
        "usage_location": str_of(user, "usageLocation"),
        "homed": homed,
        "hosting_provider": null,
        "interpreted_user_type": null,
        "teams_upgrade_effective_mode": upgrade_mode,
        "line_uri": line,
        "on_prem_line_uri": on_prem_line,
        "enterprise_voice_enabled": cfg.get("isEnterpriseVoiceEnabled").and_then(Value::as_bool),
        "online_voice_routing_policy": policy,
        "feature_types": cfg.get("featureTypes").cloned().unwrap_or_else(|| json!([])),
        "licences": licences,
        "dir_synced": user.get("onPremisesSyncEnabled").and_then(Value::as_bool) == Some(true),
        "hosted_voicemail": null,
        "account_type": account_type,
        "licence_assignments": assignments,
    })
}

/// The effective mode a TeamsUpgradePolicy name grants (`None`: unknown).
fn upgrade_mode(policy: &str) -> Option<&'static str> {
    Some(match policy {
        "UpgradeToTeams" => "TeamsOnly",
        "Islands" | "IslandsWithNotify" | "Global" => "Islands",
        "SfBOnly" | "SfBOnlyWithNotify" => "SfBOnly",
        "SfBWithTeamsCollab" | "SfBWithTeamsCollabWithNotify" => "SfBWithTeamsCollab",
        "SfBWithTeamsCollabAndMeetings" | "SfBWithTeamsCollabAndMeetingsWithNotify" => {
            "SfBWithTeamsCollabAndMeetings"
        }
        _ => return None,
    })
}

/// `get_number`'s view of one `numberAssignment`, as
/// [`crate::backend::NumberView`] JSON.
///
/// Enum members are turned to PascalCase (`numberType`, `activationState`,
/// `assignmentStatus` → `pstn_assignment_status`, `numberSource`).
/// `location_update_supported`: `supportedCustomerActions` holds
/// `locationUpdate`. `pstn_partner_name`: `Microsoft` for Calling Plan
/// numbers (the service is the operator), else `null` (Graph gives an
/// `operatorId`, not the operator's name). `address_mode`: `null` here;
/// [`find_number`] fills it with `NumberView`'s documented rule
/// (operator-locked when the location cannot be updated, operator-assigns
/// for an Operator Connect number with a location, else tenant-assigns):
/// Graph does not say who set the address.
pub fn number_view(row: &Value) -> Value {
    let enum_of = |k: &str| match row.get(k).and_then(Value::as_str) {
        Some(s) => json!(pascal(s)),
        None => Value::Null,
    };
    let number_type = enum_of("numberType");
    let supported = row
        .get("supportedCustomerActions")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("locationUpdate")));
    let partner = if number_type == json!("CallingPlan") {
        json!("Microsoft")
    } else {
        Value::Null
    };
    json!({
        "telephone_number": row.get("telephoneNumber").and_then(Value::as_str).map(e164),
        "number_type": number_type,
        "activation_state": enum_of("activationState"),
        "pstn_assignment_status": enum_of("assignmentStatus"),
        "assigned_pstn_target_id": str_of(row, "assignmentTargetId"),
        "location_id": str_of(row, "locationId"),
        "number_source": enum_of("numberSource"),
        "pstn_partner_name": partner,
        "iso_country_code": str_of(row, "isoCountryCode"),
        "location_update_supported": supported,
        "address_mode": null,
    })
}

/// The row of `number` among a `numberAssignments` answer, as a view; `null`
/// when absent (Graph `$filter` is exact, but be strict anyway).
pub fn find_number(rows: &[Value], number: &str) -> Value {
    rows.iter()
        .find(|r| r.get("telephoneNumber").and_then(Value::as_str).map(e164) == Some(e164(number)))
        .map_or(Value::Null, |r| with_address_mode(number_view(r)))
}

/// `view` with its `address_mode` filled by [`crate::backend::NumberView`]'s
/// rule, as every other backend's views have it (workflows read the field).
fn with_address_mode(view: Value) -> Value {
    match serde_json::from_value::<crate::backend::NumberView>(view.clone()) {
        Ok(n) => serde_json::to_value(n).unwrap_or(view),
        Err(_) => view,
    }
}

/// What a long-running operation says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LroState {
    /// `notStarted`, `running` (or an unknown member): not finished.
    Pending(String),
    /// `succeeded`.
    Succeeded,
    /// `failed`, with the `statusDetail` of a failed number (or none).
    Failed(Option<String>),
}

/// Read a long-running operation body (already unwrapped, see
/// [`super::client::entity`]).
pub fn lro_state(op: &Value) -> LroState {
    let status = op
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let detail = || {
        op.get("numbers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|n| n.get("status").and_then(Value::as_str) != Some("succeeded"))
            .find_map(|n| n.get("statusDetail").and_then(Value::as_str))
            .or_else(|| op.get("statusDetail").and_then(Value::as_str))
            .map(str::to_string)
    };
    match status {
        "succeeded" => LroState::Succeeded,
        "failed" => LroState::Failed(detail()),
        other => LroState::Pending(other.to_string()),
    }
}

/// A failed operation's `statusDetail` through the classifier, as if the
/// service had refused the request with it (HTTP 400).
pub fn lro_failure(detail: Option<&str>, what: &str, now: crate::clock::Timestamp) -> BackendError {
    let msg = detail.unwrap_or("the operation failed without a status detail");
    let body = json!({"error": {"code": "OperationFailed", "message": msg}}).to_string();
    let mut e = super::errors::classify(
        400,
        &reqwest::header::HeaderMap::new(),
        body.as_bytes(),
        now,
    );
    e.message = format!("{what}: long-running operation failed: {}", e.message);
    e
}

/// The precondition error of a licence held only through groups.
pub fn group_licence(sku: &str, groups: &[String]) -> BackendError {
    BackendError::new(
        ErrorKind::Precondition,
        format!(
            "User license is inherited from a group membership and it cannot be removed \
             directly from the user ({sku} via group {}); remove the user from the group \
             or the licence from the group",
            groups.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_and_numbers_normalise() {
        assert_eq!(pascal("directRouting"), "DirectRouting");
        assert_eq!(pascal("onPremises"), "OnPremises");
        assert_eq!(e164("12061234567"), "+12061234567");
        assert_eq!(e164("tel:+12061234567"), "+12061234567");
        assert_eq!(number_type(NumberType::OperatorConnect), "operatorConnect");
    }

    #[test]
    fn lro_states_and_details() {
        assert_eq!(
            lro_state(&json!({"status": "running"})),
            LroState::Pending("running".into())
        );
        assert_eq!(
            lro_state(&json!({"status": "succeeded"})),
            LroState::Succeeded
        );
        let f = json!({"status": "failed", "numbers": [{"status": "failed",
            "statusDetail": "Service is unavailable. Please try again"}]});
        let LroState::Failed(d) = lro_state(&f) else {
            panic!("failed")
        };
        let e = lro_failure(d.as_deref(), "assign", crate::clock::Timestamp(0));
        assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    }

    #[test]
    fn user_fields_graph_lacks_are_null() {
        let v = user_view(
            &json!({"id": "x", "userPrincipalName": "a@b", "proxyAddresses": ["smtp:a@b", "sip:a@b"]}),
            Some(&json!({"accountType": "unknownFutureValue",
                "telephoneNumbers": [{"telephoneNumber": "+1", "assignmentCategory": "primary"}]})),
            &Skus::default(),
            Some("onPremises"),
        );
        assert_eq!(v["sip_address"], "a@b");
        assert!(v["homed"].is_null() && v["account_type"].is_null());
        assert!(v["hosting_provider"].is_null() && v["hosted_voicemail"].is_null());
        assert_eq!(v["on_prem_line_uri"], "+1");
        assert_eq!(v["online_voice_routing_policy"], Value::Null);
    }
}
