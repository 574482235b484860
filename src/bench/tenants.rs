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

/// The index of a benchmark subject from its UPN (its digits; 0 if none).
pub fn upn_index(upn: &str) -> u32 {
    let digits: String = upn.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// A Teams Phone user as a benchmark tenant answers `get_user`: online,
/// licensed, number `line_uri` (none: voice off) and voice routing `policy`.
pub fn bench_user_view(upn: &str, line_uri: Option<String>, policy: Option<String>) -> UserView {
    let i = u64::from(upn_index(upn));
    let licences = ["Teams", "MCOEV", "MCOProfessional", "MCOMEETADD"];
    UserView {
        id: format!("{i:08x}-5f1c-4c3e-9a51-{:012x}", i * 7919),
        upn: upn.to_string(),
        sip_address: upn.to_string(),
        usage_location: "US".into(),
        homed: Homing::Online,
        hosting_provider: "sipfed.online.lync.com".into(),
        interpreted_user_type: "DirSyncEnabledOnlineTeamsOnlyUser".into(),
        teams_upgrade_effective_mode: "TeamsOnly".into(),
        enterprise_voice_enabled: line_uri.is_some(),
        line_uri,
        on_prem_line_uri: None,
        online_voice_routing_policy: policy,
        feature_types: ["Teams", "AudioConferencing", "PhoneSystem"]
            .map(String::from)
            .to_vec(),
        licences: licences.map(String::from).to_vec(),
        dir_synced: true,
        hosted_voicemail: true,
        account_type: "User".into(),
        licence_assignments: licences
            .map(crate::backend::LicenceAssignment::direct)
            .to_vec(),
    }
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
        let i = upn_index(upn);
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
        let view = bench_user_view(
            upn,
            (!removed).then(|| scale_number(i)),
            (!unrouted).then(|| "DR-Seattle-International".into()),
        );
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
/// The external system of the anchors-bench workload: an action is a no-op
/// that is counted and restarts its step's poll count; `get_user` shows the
/// policy of the user's last action from the `done_on`th poll after it.
/// Calls never wait, and no lock is held beyond one map update.
pub struct AnchorTenant {
    done_on: u32,
    users: Mutex<HashMap<String, AnchorUser>>,
    actions: AtomicU64,
    polls: AtomicU64,
}

/// One user of [`AnchorTenant`].
#[derive(Default)]
struct AnchorUser {
    /// The policy `get_user` shows.
    visible: Option<String>,
    /// The policy of the last action, until it becomes visible.
    pending: Option<String>,
    /// Polls since the last action.
    polls: u32,
}

impl AnchorTenant {
    /// A tenant whose changes show on the `done_on`th poll (at least the 1st).
    pub fn new(done_on: u32) -> AnchorTenant {
        AnchorTenant {
            done_on: done_on.max(1),
            users: Mutex::new(HashMap::new()),
            actions: AtomicU64::new(0),
            polls: AtomicU64::new(0),
        }
    }

    /// Actions received.
    pub fn actions(&self) -> u64 {
        self.actions.load(Ordering::Relaxed)
    }

    /// Polls (`get_user`) received.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, AnchorUser>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Tenant for AnchorTenant {
    async fn execute(&self, call: &TenantCall) -> Result<Value, BackendError> {
        match &call.op {
            Operation::GrantVoiceRoutingPolicy { user, policy } => {
                self.actions.fetch_add(1, Ordering::Relaxed);
                let mut users = self.users();
                let u = users.entry(user.clone()).or_default();
                u.pending = policy.clone();
                u.polls = 0;
                Ok(json!({}))
            }
            Operation::GetUser { user } => {
                self.polls.fetch_add(1, Ordering::Relaxed);
                let policy = {
                    let mut users = self.users();
                    let u = users.entry(user.clone()).or_default();
                    u.polls += 1;
                    if u.polls >= self.done_on && u.pending.is_some() {
                        u.visible = u.pending.take();
                    }
                    u.visible.clone()
                };
                // Only the field the workflow reads, as the anchors' external
                // system answers a bare "done": the engine is measured, not JSON.
                Ok(json!({ "online_voice_routing_policy": policy }))
            }
            other => Err(BackendError::new(
                crate::backend::ErrorKind::Fatal,
                format!("the anchors-bench tenant does not do {}", other.kind()),
            )),
        }
    }
}
