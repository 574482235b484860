//! Tenants used by the benchmarks: a counting wrapper around any tenant, and a
//! stand-in for a remote tenant at 100,000-user scale.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::vclock::InFlight;
use crate::backend::{BackendError, Homing, Operation, OperationKind, Tenant, UserView};
// `Call` here is this module's call log entry; the backend's envelope is `TenantCall`.
use crate::backend::Call as TenantCall;
use crate::clock::{SharedClock, Timestamp};

/// One backend call as the benchmark saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// When (engine clock).
    pub at: Timestamp,
    /// A read (poll, inspection) rather than an action.
    pub observation: bool,
}

/// Wraps a tenant: counts calls and those in flight (for the virtual clock),
/// and optionally records each call's instant per user or number.
pub struct CountingTenant {
    inner: Arc<dyn Tenant>,
    clock: SharedClock,
    /// Calls in flight now.
    pub inflight: Arc<InFlight>,
    calls: AtomicU64,
    log: Option<Mutex<HashMap<String, Vec<Call>>>>,
}

impl CountingTenant {
    /// Wrap `inner`; with `log`, keep every call's instant by its user or number.
    pub fn new(inner: Arc<dyn Tenant>, clock: SharedClock, log: bool) -> CountingTenant {
        CountingTenant {
            inner,
            clock,
            inflight: Arc::new(InFlight::default()),
            calls: AtomicU64::new(0),
            log: log.then(|| Mutex::new(HashMap::new())),
        }
    }

    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The recorded calls, by the user or number they addressed.
    pub fn take_log(&self) -> HashMap<String, Vec<Call>> {
        match &self.log {
            Some(l) => std::mem::take(&mut *l.lock().unwrap_or_else(|p| p.into_inner())),
            None => HashMap::new(),
        }
    }
}

/// The user or number an operation addresses (`user` first).
fn addressee(op: &Operation) -> Option<String> {
    let v = serde_json::to_value(op).ok()?;
    v.get("user")
        .or_else(|| v.get("number"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[async_trait]
impl Tenant for CountingTenant {
    async fn execute(&self, tc: &TenantCall) -> Result<Value, BackendError> {
        let op = &tc.op;
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = &self.log {
            if let Some(who) = addressee(op) {
                let call = Call {
                    at: self.clock.now(),
                    observation: op.kind().info().observation,
                };
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(who)
                    .or_default()
                    .push(call);
            }
        }
        // Counted out only once this task runs again, so the virtual clock
        // cannot move between the answer and its processing.
        let _in = self.inflight.enter();
        self.inner.execute(tc).await
    }

    fn automates(&self, kind: OperationKind) -> bool {
        self.inner.automates(kind)
    }
}

/// UPN of scale subject `i`.
pub fn scale_upn(i: u32) -> String {
    format!("user{i:06}@contoso.com")
}

/// Number of scale subject `i`.
pub fn scale_number(i: u32) -> String {
    format!("+1425{i:07}")
}

/// A stand-in for a remote tenant with 100,000 users, answering the DR → OC
/// workflow like a tenant whose operator has not uploaded any number yet: its
/// instances all end up polling `wait-operator-upload`. It keeps almost no
/// state, so a process's memory is the engine's, not a simulator's.
#[derive(Default)]
pub struct ScaleTenant {
    /// Users whose DR number was removed.
    removed: Mutex<HashSet<String>>,
    /// Users whose voice routing policy was removed.
    unrouted: Mutex<HashSet<String>>,
    calls: AtomicU64,
    /// Signalled on the first call.
    pub first_call: tokio::sync::Notify,
}

impl ScaleTenant {
    /// Calls answered.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn user_view(&self, upn: &str) -> Value {
        let digits: String = upn.chars().filter(char::is_ascii_digit).collect();
        let i: u32 = digits.parse().unwrap_or(0);
        let removed = self
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(upn);
        let unrouted = self
            .unrouted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(upn);
        let view = UserView {
            id: format!("{i:08x}-5f1c-4c3e-9a51-{:012x}", u64::from(i) * 7919),
            upn: upn.to_string(),
            sip_address: upn.to_string(),
            usage_location: "US".into(),
            homed: Homing::Online,
            hosting_provider: "sipfed.online.lync.com".into(),
            interpreted_user_type: "DirSyncEnabledOnlineTeamsOnlyUser".into(),
            teams_upgrade_effective_mode: "TeamsOnly".into(),
            line_uri: (!removed).then(|| scale_number(i)),
            on_prem_line_uri: None,
            enterprise_voice_enabled: !removed,
            online_voice_routing_policy: (!unrouted).then(|| "DR-Seattle-International".into()),
            feature_types: ["Teams", "AudioConferencing", "PhoneSystem"]
                .map(String::from)
                .to_vec(),
            licences: ["Teams", "MCOEV", "MCOProfessional", "MCOMEETADD"]
                .map(String::from)
                .to_vec(),
            dir_synced: true,
            hosted_voicemail: true,
            account_type: "User".into(),
            licence_assignments: ["Teams", "MCOEV", "MCOProfessional", "MCOMEETADD"]
                .map(crate::backend::LicenceAssignment::direct)
                .to_vec(),
        };
        serde_json::to_value(view).unwrap_or(Value::Null)
    }

    fn number_view(&self, number: &str) -> Value {
        let Some(i) = number
            .strip_prefix("+1425")
            .and_then(|d| d.parse::<u32>().ok())
        else {
            return Value::Null;
        };
        let upn = scale_upn(i);
        let removed = self
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&upn);
        if removed {
            return Value::Null;
        }
        let user = self.user_view(&upn);
        json!({
            "telephone_number": number,
            "number_type": "DirectRouting",
            "activation_state": "Activated",
            "pstn_assignment_status": "UserAssigned",
            "assigned_pstn_target_id": user["id"],
            "location_id": null,
            "number_source": "Online",
            "pstn_partner_name": null,
            "iso_country_code": "US",
            "location_update_supported": true,
            "address_mode": "tenant_assigns",
        })
    }
}

#[async_trait]
impl Tenant for ScaleTenant {
    async fn execute(&self, call: &TenantCall) -> Result<Value, BackendError> {
        let op = &call.op;
        if self.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_call.notify_one();
        }
        Ok(match op {
            Operation::GetUser { user } => self.user_view(user),
            Operation::RemoveNumber { user, .. } => {
                self.removed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(user.clone());
                json!({})
            }
            Operation::GrantVoiceRoutingPolicy { user, .. } => {
                self.unrouted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(user.clone());
                json!({})
            }
            // The user's Direct Routing number until it is removed; then it
            // left the tenant and the operator has not uploaded it yet.
            Operation::GetNumber { number } => self.number_view(number),
            _ => json!({}),
        })
    }
}
