//! The tenant contract: typed admin operations, what they return, how they fail.
//!
//! Every backend (the simulator, Graph, PowerShell) implements [`Tenant`]. The
//! operation catalog ([`catalog`], one table) says for each operation whether it is
//! idempotent (safe to re-issue after a crash) and whether it takes a number out of
//! service; the engine's reconciliation relies on it.

pub mod catalog;
pub mod config;
#[cfg(feature = "graph")]
pub mod graph;
#[cfg(feature = "graph")]
pub mod microsoft;
#[cfg(feature = "graph")]
pub mod powershell;
pub mod powershell_config;
pub mod readonly;
pub mod registry;
pub mod sim;

pub use catalog::{Operation, OperationInfo, OperationKind, Param, ParamType};
pub use config::{BackendConfig, Secret, SecretError, SecretRef};
pub use readonly::ReadOnly;
pub use registry::{Opened, Presence, Registry, RegistryError, Scope};

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

/// How a backend call failed, which decides whether the engine retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The call may or may not have taken effect (a host process died or
    /// hung mid-request): the engine reconciles it like a missed deadline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
}

impl BackendError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError {
            kind,
            message: message.into(),
            retry_after_ms: None,
            outcome_unknown: false,
        }
    }

    /// Mark the outcome as unknown (see [`BackendError::outcome_unknown`]).
    pub fn with_unknown_outcome(mut self) -> BackendError {
        self.outcome_unknown = true;
        self
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
    /// Licences (SKU / plan names): `Teams`, `MCOProfessional` (Skype for Business
    /// Online Plan 2), `MCOEV` (Phone System), `MCOPSTN1` (Calling Plan),
    /// `MCOMEETADD` (Audio Conferencing).
    #[serde(default)]
    pub licences: Vec<String>,
    /// Synced from on-premises AD by Entra Connect (`false`: created in the cloud).
    #[serde(default)]
    pub dir_synced: bool,
    /// Whether hosted (cloud) voicemail is enabled.
    #[serde(default)]
    pub hosted_voicemail: bool,
    /// `User`, `SfBOnPremUser`, `IneligibleUser`, `ResourceAccount`, `Guest`.
    #[serde(default = "default_account_type")]
    pub account_type: String,
    /// How each licence reaches the user (Graph `licenseAssignmentStates`): one
    /// entry per assignment path, so a SKU assigned directly and inherited from
    /// a group appears twice. A SKU with only `group` paths cannot be removed
    /// per user ("User license is inherited from a group membership"). Lags
    /// like the other fields.
    #[serde(default)]
    pub licence_assignments: Vec<LicenceAssignment>,
}

/// One path by which a user holds a licence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenceAssignment {
    /// SKU / plan name (`MCOPSTN1`, `MCOEV`, …), as in [`UserView::licences`].
    pub sku: String,
    /// [`LicenceAssignment::DIRECT`] or [`LicenceAssignment::GROUP`].
    pub assigned_via: String,
    /// Display name of the group the licence is inherited from (`group` only).
    #[serde(default)]
    pub group: Option<String>,
}

impl LicenceAssignment {
    /// Assigned to the user directly (removable per user).
    pub const DIRECT: &'static str = "direct";
    /// Inherited from a group membership (group-based licensing).
    pub const GROUP: &'static str = "group";

    /// A direct assignment of `sku`.
    pub fn direct(sku: &str) -> LicenceAssignment {
        LicenceAssignment {
            sku: sku.to_string(),
            assigned_via: Self::DIRECT.into(),
            group: None,
        }
    }

    /// An assignment of `sku` inherited from `group`.
    pub fn via_group(sku: &str, group: &str) -> LicenceAssignment {
        LicenceAssignment {
            sku: sku.to_string(),
            assigned_via: Self::GROUP.into(),
            group: Some(group.to_string()),
        }
    }

    /// Whether this path is a group membership.
    pub fn is_group(&self) -> bool {
        self.assigned_via == Self::GROUP
    }
}

fn default_account_type() -> String {
    "User".into()
}

fn default_country() -> String {
    "US".into()
}

fn default_true() -> bool {
    true
}

/// Where a user is homed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Homing {
    /// Teams / SfB Online.
    Online,
    /// Skype for Business Server on-premises.
    OnPremises,
}

/// Who sets the emergency address of an Operator Connect number, as the
/// operator chose at upload (DOMAIN 3.2). Numbers of other types are
/// [`AddressMode::TenantAssigns`]: the tenant's admins set their locations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressMode {
    /// The operator set the address at upload; the tenant may change it.
    OperatorAssigns,
    /// Uploaded without an address; the tenant assigns it.
    TenantAssigns,
    /// The operator set the address and only the operator can change it
    /// (`location_update_supported` is false).
    OperatorLocked,
}

impl AddressMode {
    /// Every mode, in the order of DOMAIN 3.2.
    pub const ALL: [AddressMode; 3] = [
        AddressMode::OperatorAssigns,
        AddressMode::TenantAssigns,
        AddressMode::OperatorLocked,
    ];

    /// Snake-case name, as in [`NumberView::address_mode`].
    pub fn as_str(self) -> &'static str {
        match self {
            AddressMode::OperatorAssigns => "operator_assigns",
            AddressMode::TenantAssigns => "tenant_assigns",
            AddressMode::OperatorLocked => "operator_locked",
        }
    }

    /// Parse [`NumberView::address_mode`].
    pub fn parse(s: &str) -> Option<AddressMode> {
        AddressMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the operator set the address at upload.
    pub fn operator_sets_address(self) -> bool {
        self != AddressMode::TenantAssigns
    }
}

impl fmt::Display for AddressMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `get_number` returns, after `Get-CsPhoneNumberAssignment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "NumberViewWire")]
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
    /// Country of the number (ISO 3166 alpha-2).
    #[serde(default = "default_country")]
    pub iso_country_code: String,
    /// Whether the tenant may change the number's emergency location (`false`
    /// when the operator locked the emergency address).
    #[serde(default = "default_true")]
    pub location_update_supported: bool,
    /// Who sets the emergency address ([`AddressMode`] name):
    /// `operator_assigns`, `tenant_assigns` or `operator_locked`. Rows stored
    /// before the field existed read as `operator_locked` when
    /// `location_update_supported` is false, else `operator_assigns` for an
    /// Operator Connect number that has a `location_id`, else `tenant_assigns`.
    pub address_mode: String,
}

/// [`NumberView`] as stored or sent, `address_mode` possibly absent (older data).
#[derive(Deserialize)]
struct NumberViewWire {
    telephone_number: String,
    number_type: NumberType,
    activation_state: String,
    pstn_assignment_status: String,
    assigned_pstn_target_id: Option<String>,
    location_id: Option<String>,
    number_source: String,
    pstn_partner_name: Option<String>,
    #[serde(default = "default_country")]
    iso_country_code: String,
    #[serde(default = "default_true")]
    location_update_supported: bool,
    #[serde(default)]
    address_mode: Option<String>,
}

impl From<NumberViewWire> for NumberView {
    fn from(w: NumberViewWire) -> NumberView {
        let address_mode = w.address_mode.unwrap_or_else(|| {
            let mode = if !w.location_update_supported {
                AddressMode::OperatorLocked
            } else if w.number_type == NumberType::OperatorConnect && w.location_id.is_some() {
                AddressMode::OperatorAssigns
            } else {
                AddressMode::TenantAssigns
            };
            mode.as_str().to_string()
        });
        NumberView {
            telephone_number: w.telephone_number,
            number_type: w.number_type,
            activation_state: w.activation_state,
            pstn_assignment_status: w.pstn_assignment_status,
            assigned_pstn_target_id: w.assigned_pstn_target_id,
            location_id: w.location_id,
            number_source: w.number_source,
            pstn_partner_name: w.pstn_partner_name,
            iso_country_code: w.iso_country_code,
            location_update_supported: w.location_update_supported,
            address_mode,
        }
    }
}

impl NumberView {
    /// [`NumberView::address_mode`] parsed; an unknown name counts as
    /// `operator_locked` when the location cannot be updated, else `tenant_assigns`.
    pub fn mode(&self) -> AddressMode {
        AddressMode::parse(&self.address_mode).unwrap_or(if self.location_update_supported {
            AddressMode::TenantAssigns
        } else {
            AddressMode::OperatorLocked
        })
    }
}

/// What `get_onprem_user` returns: the Skype for Business Server object of a
/// user (`Get-CsUser` in the SfB Management Shell).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnPremUserView {
    /// User principal name.
    pub upn: String,
    /// SIP address.
    pub sip_address: String,
    /// Whether Enterprise Voice is enabled on-premises.
    pub enterprise_voice_enabled: bool,
    /// Line URI (E.164 with `+`, without `tel:`), if set.
    pub line_uri: Option<String>,
    /// On-premises registrar pool FQDN.
    pub registrar_pool: String,
    /// Where the user is homed now (`Online` after `Move-CsUser`).
    pub homed: Homing,
}

/// What `get_port_order` returns: the port order covering a number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortOrderView {
    /// Order id.
    pub order_id: String,
    /// E.164 number the order ports.
    pub number: String,
    /// `Processing`, `ContactingCarrier`, `TransferApproved`, `TransferPending`
    /// (frozen, under 24 h before the FOC date), `Completed`, `Error`, `Cancelled`.
    pub status: String,
    /// Firm order commitment date (known from `TransferApproved` on).
    pub foc_date: Option<crate::clock::Timestamp>,
    /// Rejection reason when `status` is `Error`.
    pub error: Option<String>,
}

/// What `get_conferencing` returns: a user's audio conferencing settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConferencingView {
    /// `Microsoft`, or the third-party provider's name.
    pub provider: String,
    /// 7-digit conference id (Microsoft provider only).
    pub conference_id: Option<String>,
    /// Toll dial-in number (E.164), if any.
    pub toll_number: Option<String>,
}

/// What `get_location` returns: an emergency location with its civic address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocationView {
    /// Location id.
    pub location_id: String,
    /// Civic address id.
    pub civic_address_id: String,
    /// Description of the place.
    pub description: String,
    /// Country (ISO 3166 alpha-2).
    pub country: String,
    /// `Validated`, `NotValidated` or `Invalid`.
    pub validation_status: String,
}

/// One call to a backend: the operation and, for an action, the idempotency
/// key and attempt number the engine recorded in its intent.
///
/// Real backends pass the key on (Graph's `client-request-id`, a PowerShell
/// log line) so a call re-issued after a crash or a deadline can be recognised.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// What to do.
    pub op: Operation,
    /// `<run>/<idx>/<step>/[undo/]<attempt>` for an action; `None` for an observation.
    pub key: Option<String>,
    /// Attempt number of the action (1-based); 0 for an observation.
    pub attempt: u32,
}

impl Call {
    /// An action attempt with its idempotency key.
    pub fn action(op: Operation, key: impl Into<String>, attempt: u32) -> Call {
        Call {
            op,
            key: Some(key.into()),
            attempt,
        }
    }

    /// A read: no key, attempt 0.
    pub fn observation(op: Operation) -> Call {
        Call {
            op,
            key: None,
            attempt: 0,
        }
    }
}

/// A tenant the engine can act on.
#[async_trait]
pub trait Tenant: Send + Sync {
    /// Perform one call. Observations return their view as JSON
    /// ([`UserView`], [`NumberView`] or `null`); actions return a small JSON
    /// object (possibly empty).
    async fn execute(&self, call: &Call) -> Result<serde_json::Value, BackendError>;

    /// Whether this backend performs `kind` itself; when it does not, the engine
    /// turns the step into a manual task with [`OperationInfo::manual`]'s
    /// instructions. By default everything the catalog does not mark manual.
    fn automates(&self, kind: OperationKind) -> bool {
        kind.info().manual.is_none()
    }

    /// The backend `kind` needs when this one cannot perform it and a manual
    /// task is no substitute (it has a cmdlet, not an admin-center page):
    /// `plan` blocks subjects whose path reaches it, `doctor` reports it.
    /// `None`: automated here, or manual everywhere.
    fn needs(&self, kind: OperationKind) -> Option<&'static str> {
        let _ = kind;
        None
    }

    /// Which tenant this is, when the backend can tell (the first run on a
    /// tenant records it, and later runs refuse another tenant in its place).
    fn identity(&self) -> Option<TenantIdentity> {
        None
    }

    /// Figures for a run summary or a plan (calls, throttling, outages), when
    /// the backend keeps them.
    fn report(&self) -> Option<BackendReport> {
        None
    }

    /// Copy the backend's own state into `dest` (a new directory) for
    /// `portflow backup`, when it keeps any locally; returns bytes copied.
    fn backup_to(&self, dest: &std::path::Path) -> Option<Result<u64, BackendStateError>> {
        let _ = dest;
        None
    }
}

/// Who a tenant is: what tells it from another one with the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantIdentity {
    /// The tenant id (a GUID).
    pub tenant_id: String,
    /// When the tenant was created (the simulator: seeded).
    pub created_at: crate::clock::Timestamp,
    /// The latest instant any call on it ran at, when known (runs sharing a
    /// simulated tenant anchor their clocks there).
    pub reached: Option<crate::clock::Timestamp>,
}

/// What [`Tenant::report`] returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BackendReport {
    /// Calls received per operation name, observations included.
    pub calls: std::collections::BTreeMap<String, u64>,
    /// Calls answered with `Throttled`.
    pub throttled: u64,
    /// Of those, refused by the tenant's rate limit.
    pub rate_limited: u64,
    /// Faults injected (simulator only).
    pub injected_faults: u64,
    /// Out-of-service spans the tenant saw, by user (those it can tell).
    pub outages: Vec<OutageSpan>,
}

/// One subject's number out of service, as the tenant saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutageSpan {
    /// UPN.
    pub user: String,
    /// The number.
    pub number: String,
    /// When it went out of service.
    pub start: crate::clock::Timestamp,
    /// When service came back, if it has.
    pub end: Option<crate::clock::Timestamp>,
}

/// A backend's local state could not be read or copied.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct BackendStateError {
    /// What was being done, naming the place (never a secret).
    pub what: String,
    /// Cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
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
    fn move_user_force_accepts_bool_text_and_absence() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Operation>(v).ok();
        let mv = |force| {
            Some(Operation::MoveUser {
                user: "a@contoso.com".into(),
                force,
            })
        };
        assert_eq!(
            parse(serde_json::json!({"op": "move_user", "user": "a@contoso.com"})),
            mv(false)
        );
        assert_eq!(
            parse(serde_json::json!({"op": "move_user", "user": "a@contoso.com", "force": true})),
            mv(true)
        );
        assert_eq!(
            parse(serde_json::json!({"op": "move_user", "user": "a@contoso.com", "force": "true"})),
            mv(true)
        );
        assert_eq!(
            parse(serde_json::json!({"op": "move_user", "user": "a@contoso.com", "force": null})),
            mv(false)
        );
        assert_eq!(
            parse(serde_json::json!({"op": "move_user", "user": "a@contoso.com", "force": "yes"})),
            None
        );
    }

    #[test]
    fn only_the_conference_id_reset_is_manual() {
        struct Plain;
        #[async_trait]
        impl Tenant for Plain {
            async fn execute(&self, _: &Call) -> Result<serde_json::Value, BackendError> {
                Ok(serde_json::Value::Null)
            }
        }
        for k in OperationKind::ALL {
            let manual = k.info().manual.is_some();
            assert_eq!(manual, *k == OperationKind::ResetConferenceId, "{k}");
            assert_eq!(Plain.automates(*k), !manual);
        }
        let info = OperationKind::SendConferencingInfo.info();
        assert!(!info.idempotent && !info.observation);
        assert!(OperationKind::GetPortOrder.info().observation);
    }

    #[test]
    fn catalog_names_resolve() {
        for k in OperationKind::ALL {
            assert_eq!(OperationKind::from_name(k.info().name), Some(*k));
        }
        assert_eq!(OperationKind::from_name("nope"), None);
    }
}
