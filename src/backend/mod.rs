//! The tenant contract: typed admin operations, what they return, how they fail.
//!
//! Every backend (the simulator, Graph, PowerShell) implements [`Tenant`]. The
//! operation catalog ([`OperationKind::info`]) says for each operation whether it is
//! idempotent (safe to re-issue after a crash) and whether it takes a number out of
//! service; the engine's reconciliation relies on it.

pub mod sim;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Phone number type as Teams knows it (`-NumberType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NumberType {
    /// Direct Routing: the customer's own SBC.
    DirectRouting,
    /// Microsoft Calling Plan.
    CallingPlan,
    /// Operator Connect.
    OperatorConnect,
}

impl NumberType {
    /// The name used by the cmdlets.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::DirectRouting => "DirectRouting",
            NumberType::CallingPlan => "CallingPlan",
            NumberType::OperatorConnect => "OperatorConnect",
        }
    }
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One admin operation with its arguments, as the engine sends it to a backend.
///
/// Serialized with the operation name in `op` and the arguments beside it, which
/// is also how a workflow's rendered `args` are turned into an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Read a user (`Get-CsOnlineUser -Identity`). Returns a [`UserView`].
    GetUser {
        /// UPN of the user.
        user: String,
    },
    /// Read a number (`Get-CsPhoneNumberAssignment -TelephoneNumber`).
    /// Returns a [`NumberView`], or `null` when the tenant does not hold the number.
    GetNumber {
        /// E.164 number with `+`.
        number: String,
    },
    /// On-premises `Set-CsUser -LineURI $null`: changes AD only; the cloud sees it
    /// after the next directory sync.
    ClearOnpremLineUri {
        /// UPN of the user.
        user: String,
    },
    /// `Remove-CsPhoneNumberAssignment -Identity -PhoneNumber -PhoneNumberType`.
    RemoveNumber {
        /// UPN of the user.
        user: String,
        /// E.164 number.
        number: String,
        /// Type the number has in the tenant.
        number_type: NumberType,
    },
    /// `Grant-CsOnlineVoiceRoutingPolicy -Identity -PolicyName` (`null` = back to Global).
    GrantVoiceRoutingPolicy {
        /// UPN of the user.
        user: String,
        /// Policy name; `None` removes the per-user policy.
        #[serde(default)]
        policy: Option<String>,
    },
    /// `Set-CsPhoneNumberAssignment -Identity -PhoneNumber -PhoneNumberType [-LocationId]`.
    AssignNumber {
        /// UPN of the user.
        user: String,
        /// E.164 number.
        number: String,
        /// Type the number has in the tenant.
        number_type: NumberType,
        /// Emergency location id, when the number needs one.
        #[serde(default)]
        location_id: Option<String>,
    },
}

impl Operation {
    /// Which operation this is.
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::GetUser { .. } => OperationKind::GetUser,
            Operation::GetNumber { .. } => OperationKind::GetNumber,
            Operation::ClearOnpremLineUri { .. } => OperationKind::ClearOnpremLineUri,
            Operation::RemoveNumber { .. } => OperationKind::RemoveNumber,
            Operation::GrantVoiceRoutingPolicy { .. } => OperationKind::GrantVoiceRoutingPolicy,
            Operation::AssignNumber { .. } => OperationKind::AssignNumber,
        }
    }
}

/// Name of an operation without arguments (what a workflow's `op:` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// See [`Operation::GetUser`].
    GetUser,
    /// See [`Operation::GetNumber`].
    GetNumber,
    /// See [`Operation::ClearOnpremLineUri`].
    ClearOnpremLineUri,
    /// See [`Operation::RemoveNumber`].
    RemoveNumber,
    /// See [`Operation::GrantVoiceRoutingPolicy`].
    GrantVoiceRoutingPolicy,
    /// See [`Operation::AssignNumber`].
    AssignNumber,
}

/// Type of an operation argument, for validation of workflow `args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// A user principal name.
    Upn,
    /// An E.164 phone number.
    E164,
    /// A [`NumberType`] name.
    NumberType,
    /// Free text.
    String,
}

/// One argument of an operation.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    /// Argument name in YAML.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// Whether it must be given.
    pub required: bool,
}

/// What the engine needs to know about an operation.
#[derive(Clone, Copy, Debug)]
pub struct OperationInfo {
    /// Name in workflows (`op:`).
    pub name: &'static str,
    /// The Microsoft operation it stands for.
    pub microsoft: &'static str,
    /// Its arguments.
    pub params: &'static [Param],
    /// Read-only observation (never changes the tenant).
    pub observation: bool,
    /// Safe to issue again when we do not know whether an earlier call took effect.
    pub idempotent: bool,
    /// Takes a phone number out of service.
    pub outage: bool,
}

const USER: Param = Param {
    name: "user",
    ty: ParamType::Upn,
    required: true,
};
const NUMBER: Param = Param {
    name: "number",
    ty: ParamType::E164,
    required: true,
};
const NUMBER_TYPE: Param = Param {
    name: "number_type",
    ty: ParamType::NumberType,
    required: true,
};

impl OperationKind {
    /// Every operation, in catalog order.
    pub const ALL: &'static [OperationKind] = &[
        OperationKind::GetUser,
        OperationKind::GetNumber,
        OperationKind::ClearOnpremLineUri,
        OperationKind::RemoveNumber,
        OperationKind::GrantVoiceRoutingPolicy,
        OperationKind::AssignNumber,
    ];

    /// Catalog entry.
    pub fn info(self) -> &'static OperationInfo {
        match self {
            OperationKind::GetUser => &OperationInfo {
                name: "get_user",
                microsoft: "Get-CsOnlineUser -Identity",
                params: &[USER],
                observation: true,
                idempotent: true,
                outage: false,
            },
            OperationKind::GetNumber => &OperationInfo {
                name: "get_number",
                microsoft: "Get-CsPhoneNumberAssignment -TelephoneNumber",
                params: &[NUMBER],
                observation: true,
                idempotent: true,
                outage: false,
            },
            OperationKind::ClearOnpremLineUri => &OperationInfo {
                name: "clear_onprem_line_uri",
                microsoft: "Set-CsUser -LineURI $null (Skype for Business Server)",
                params: &[USER],
                observation: false,
                idempotent: true,
                outage: true,
            },
            OperationKind::RemoveNumber => &OperationInfo {
                name: "remove_number",
                microsoft: "Remove-CsPhoneNumberAssignment",
                params: &[USER, NUMBER, NUMBER_TYPE],
                observation: false,
                idempotent: true,
                outage: true,
            },
            OperationKind::GrantVoiceRoutingPolicy => &OperationInfo {
                name: "grant_voice_routing_policy",
                microsoft: "Grant-CsOnlineVoiceRoutingPolicy",
                params: &[
                    USER,
                    Param {
                        name: "policy",
                        ty: ParamType::String,
                        required: false,
                    },
                ],
                observation: false,
                idempotent: true,
                outage: false,
            },
            OperationKind::AssignNumber => &OperationInfo {
                name: "assign_number",
                microsoft: "Set-CsPhoneNumberAssignment",
                params: &[
                    USER,
                    NUMBER,
                    NUMBER_TYPE,
                    Param {
                        name: "location_id",
                        ty: ParamType::String,
                        required: false,
                    },
                ],
                observation: false,
                idempotent: true,
                outage: false,
            },
        }
    }

    /// Look an operation up by its workflow name.
    pub fn from_name(name: &str) -> Option<OperationKind> {
        OperationKind::ALL
            .iter()
            .copied()
            .find(|k| k.info().name == name)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

/// How a backend call failed, which decides whether the engine retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// HTTP 429 / TooManyRequests: wait (Retry-After when given) and retry.
    Throttled,
    /// "Service is unavailable. Please try again", 503, timeouts: retry with backoff.
    Transient,
    /// The user or number cannot be resolved (may be replication lag).
    NotFound,
    /// Conflicts with other state, e.g. number already assigned to another user.
    Conflict,
    /// A precondition does not hold (licence, on-prem number, wrong type).
    Precondition,
    /// Credentials expired or invalid.
    Auth,
    /// Anything else; not retried.
    Fatal,
}

impl ErrorKind {
    /// Snake-case name, as used in workflow `retry.on`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Precondition => "precondition",
            ErrorKind::Auth => "auth",
            ErrorKind::Fatal => "fatal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed backend call. Messages never contain credentials or tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct BackendError {
    /// Classification.
    pub kind: ErrorKind,
    /// The service's message (verbatim where the service gives one).
    pub message: String,
    /// Retry-After the service asked for, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl BackendError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// Attach a Retry-After.
    pub fn with_retry_after(mut self, d: Duration) -> BackendError {
        self.retry_after_ms = Some(d.as_millis().min(u64::MAX as u128) as u64);
        self
    }

    /// Retry-After as a duration.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_ms.map(Duration::from_millis)
    }
}

/// What `get_user` returns: the cloud's (lagging) view of a user, after
/// `Get-CsOnlineUser`. Line URIs are E.164 with `+`, without the `tel:` prefix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    /// Entra object id.
    pub id: String,
    /// User principal name.
    pub upn: String,
    /// SIP address (may differ from the UPN).
    pub sip_address: String,
    /// Usage location (ISO country).
    pub usage_location: String,
    /// `Online` when homed in Teams/SfB Online, `OnPremises` when homed on SfB Server.
    pub homed: Homing,
    /// e.g. `sipfed.online.lync.com` or `SRV:`.
    pub hosting_provider: String,
    /// e.g. `HybridOnlineTeamsOnlyUser`.
    pub interpreted_user_type: String,
    /// `TeamsOnly`, `Islands`, …
    pub teams_upgrade_effective_mode: String,
    /// Number assigned online or synced from on-prem (E.164), if any.
    pub line_uri: Option<String>,
    /// Number set in on-premises AD and synced (E.164), if any.
    pub on_prem_line_uri: Option<String>,
    /// Whether Enterprise Voice is enabled.
    pub enterprise_voice_enabled: bool,
    /// Per-user online voice routing policy; `None` means Global.
    pub online_voice_routing_policy: Option<String>,
    /// Licence-derived features (`Teams`, `PhoneSystem`, `CallingPlan`, …).
    pub feature_types: Vec<String>,
}

/// Where a user is homed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Homing {
    /// Teams / SfB Online.
    Online,
    /// Skype for Business Server on-premises.
    OnPremises,
}

/// What `get_number` returns, after `Get-CsPhoneNumberAssignment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumberView {
    /// E.164 with `+`.
    pub telephone_number: String,
    /// Type of the number.
    pub number_type: NumberType,
    /// `Activated`, `AssignmentPending`, `AssignmentFailed`, `UpdatePending`, `UpdateFailed`.
    pub activation_state: String,
    /// `Unassigned`, `UserAssigned`, …
    pub pstn_assignment_status: String,
    /// Object id of the user holding it, if any.
    pub assigned_pstn_target_id: Option<String>,
    /// Emergency location id, if any.
    pub location_id: Option<String>,
    /// `Online` or `OnPremises`.
    pub number_source: String,
    /// Operator name for Operator Connect numbers (`Microsoft` for Calling Plan).
    pub pstn_partner_name: Option<String>,
}

/// A tenant the engine can act on.
#[async_trait]
pub trait Tenant: Send + Sync {
    /// Perform one operation. Observations return their view as JSON
    /// ([`UserView`], [`NumberView`] or `null`); actions return a small JSON
    /// object (possibly empty).
    async fn execute(&self, op: &Operation) -> Result<serde_json::Value, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_roundtrips_through_tagged_json() {
        let op = Operation::AssignNumber {
            user: "a@contoso.com".into(),
            number: "+14255550100".into(),
            number_type: NumberType::OperatorConnect,
            location_id: None,
        };
        let v = serde_json::to_value(&op).unwrap_or_default();
        assert_eq!(v["op"], "assign_number");
        assert_eq!(v["number_type"], "OperatorConnect");
        let back: Operation = serde_json::from_value(v).unwrap_or(Operation::GetUser {
            user: String::new(),
        });
        assert_eq!(back, op);
    }

    #[test]
    fn catalog_names_resolve() {
        for k in OperationKind::ALL {
            assert_eq!(OperationKind::from_name(k.info().name), Some(*k));
        }
        assert_eq!(OperationKind::from_name("nope"), None);
    }
}
