//! What the simulated tenant stores: users and numbers as timelines of
//! committed changes (truth) that become visible later (the lagging read
//! side), plus the public records the simulator reports (audit log, outages,
//! true state, stats).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Profile;
use crate::backend::{
    AddressMode, ConferencingView, ErrorKind, LicenceAssignment, NumberView, OnPremUserView,
    OperationKind, UserView,
};
use crate::clock::Timestamp;

/// One committed change of an entity: the state it leads to, when it took
/// effect in the service (truth) and when reads start to show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Change<S> {
    /// When the change took effect.
    pub at: Timestamp,
    /// When reads show it (never before `at`, never before the previous change).
    pub visible_at: Timestamp,
    /// The entity's whole state after the change.
    pub state: S,
}

/// State history of one entity: the state every read already shows (`base`)
/// and the changes committed since, in commit order, with non-decreasing
/// `visible_at` (the read side applies changes in order, like a replication
/// stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub(crate) struct Timeline<S> {
    pub base: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change<S>>,
}

impl<S: Clone> Timeline<S> {
    pub fn new(base: S) -> Timeline<S> {
        Timeline {
            base,
            changes: Vec::new(),
        }
    }

    /// The committed (true) state.
    pub fn truth(&self) -> &S {
        self.changes.last().map_or(&self.base, |c| &c.state)
    }

    /// What reads show at `now`.
    pub fn view(&self, now: Timestamp) -> &S {
        self.changes
            .iter()
            .rev()
            .find(|c| c.visible_at <= now)
            .map_or(&self.base, |c| &c.state)
    }

    /// Instant at which the view will equal the truth (`None`: already does).
    pub fn converges_at(&self) -> Option<Timestamp> {
        self.changes.last().map(|c| c.visible_at)
    }

    /// Commit `state` at `at`, visible from `visible_at` (raised to keep the
    /// read side in order). Returns the effective visibility instant.
    pub fn push(&mut self, at: Timestamp, visible_at: Timestamp, state: S) -> Timestamp {
        let floor = self.changes.last().map_or(at, |c| c.visible_at.max(at));
        let visible_at = visible_at.max(floor);
        self.changes.push(Change {
            at,
            visible_at,
            state,
        });
        visible_at
    }

    /// Fold the changes already visible at `now` into `base`.
    pub fn compact(&mut self, now: Timestamp) {
        let visible = self
            .changes
            .iter()
            .take_while(|c| c.visible_at <= now)
            .count();
        if visible > 0 {
            let mut drained: Vec<Change<S>> = self.changes.drain(..visible).collect();
            if let Some(last) = drained.pop() {
                self.base = last.state;
            }
        }
    }
}

/// A change the service will make on its own at a later instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum EventKind {
    /// Directory sync copies the cleared msRTCSIP-Line of this user to the cloud.
    UserDirSync,
    /// Directory sync removes this OnPremises Direct Routing number.
    NumberDirSyncRemove,
    /// The operator uploads this number as Operator Connect (stays pending while
    /// the number still exists in the tenant).
    OperatorUpload {
        /// Operator name.
        partner: String,
        /// Emergency-address mode of the upload (absent in events stored
        /// before modes: `tenant_assigns`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address_mode: Option<AddressMode>,
        /// Location the operator sets (operator modes only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location_id: Option<String>,
    },
    /// Directory sync copies a new msRTCSIP-Line of this user to the cloud.
    UserDirSyncLine {
        /// The line (E.164).
        line: String,
    },
    /// Directory sync adds this number as an OnPremises Direct Routing number
    /// assigned to the user with this object id.
    NumberDirSyncAdd {
        /// Entra object id of the user.
        target_id: String,
    },
    /// Group-based licensing assigns these licences to the user.
    LicencesArrive {
        /// SKUs.
        skus: Vec<String>,
    },
    /// The port-out order of this number completes (calls now go to the
    /// gaining operator).
    PortCompleted {
        /// The ported number.
        number: String,
    },
}

/// A scheduled event with its instants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Scheduled {
    /// When it takes effect.
    pub at: Timestamp,
    /// When reads show it.
    pub visible_at: Timestamp,
    /// What happens.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// One outage of a user's number, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredOutage {
    pub number: String,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

/// A user as stored under `u/<upn>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    /// 1-based seeding index.
    pub index: u32,
    /// The cloud's user object (truth and lagging view).
    pub cloud: Timeline<UserView>,
    /// msRTCSIP-Line in on-premises AD (E.164), if set.
    pub ad_line: Option<String>,
    /// Licence SKUs (`Teams`, `MCOEV`, `MCOProfessional`, …).
    pub licences: Vec<String>,
    /// Emergency location to use for this user's Operator Connect number.
    pub oc_location_id: Option<String>,
    /// The Direct Routing number the user was seeded with.
    pub seeded_number: String,
    /// Count of applied changes (keys the latency draws).
    pub seq: u64,
    /// Numbers that left this user (unassigned or synced away), for idempotent
    /// re-issues of `remove_number`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// Events the service will apply later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled: Vec<Scheduled>,
    /// Outages of this user's number, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<StoredOutage>,
    /// The Skype for Business Server object (`None`: not on-premises).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onprem: Option<OnPremUserView>,
    /// Audio conferencing (truth and lagging view; `None`: none).
    #[serde(default = "no_conferencing")]
    pub conferencing: Timeline<Option<ConferencingView>>,
    /// Conference ids this user had before, for "never the old id again".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_conference_ids: Vec<String>,
    /// Count of conference id resets (keys the draw of the next id).
    #[serde(default)]
    pub conference_resets: u64,
    /// Licences come from a group (cannot be removed per user).
    #[serde(default)]
    pub group_licensed: bool,
    /// How each licence reaches the user, one entry per path (truth; the view
    /// shows it with lag). Empty in records stored before paths existed: then
    /// derived from `licences` and `group_licensed` (see `licence_paths`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licence_assignments: Vec<LicenceAssignment>,
    /// Moved with `-Force`: contacts and meetings were not migrated.
    #[serde(default)]
    pub contacts_lost: bool,
    /// When this tenant's `Move-CsUser` moved the user (re-issues are no-ops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<Timestamp>,
    /// Seeded facts (see [`crate::backend::sim::tags`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl UserRecord {
    /// The user's licence paths; records stored before paths existed get one
    /// per licence, via the seed's licensing group when `group_licensed`.
    pub fn licence_paths(&self) -> Vec<LicenceAssignment> {
        if !self.licence_assignments.is_empty() || self.licences.is_empty() {
            return self.licence_assignments.clone();
        }
        self.licences
            .iter()
            .map(|sku| {
                if self.group_licensed {
                    LicenceAssignment::via_group(sku, super::seed::LICENCE_GROUP)
                } else {
                    LicenceAssignment::direct(sku)
                }
            })
            .collect()
    }

    /// Replace the licence paths and recompute `licences` (each SKU once, in
    /// path order).
    pub fn set_licence_paths(&mut self, paths: Vec<LicenceAssignment>) {
        let mut skus: Vec<String> = Vec::new();
        for p in &paths {
            if !skus.contains(&p.sku) {
                skus.push(p.sku.clone());
            }
        }
        self.licences = skus;
        self.licence_assignments = paths;
    }

    /// Copy the licence truth into a user view (licences, paths, features).
    pub fn show_licences(&self, s: &mut UserView) {
        s.licences = self.licences.clone();
        s.licence_assignments = self.licence_paths();
        s.feature_types = super::seed::features(&self.licences);
    }
}

fn no_conferencing() -> Timeline<Option<ConferencingView>> {
    Timeline::new(None)
}

/// A port-out order as stored: its instants, drawn at seeding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PortOrder {
    pub order_id: String,
    pub created_at: Timestamp,
    /// Processing → ContactingCarrier.
    pub contacting_at: Timestamp,
    /// ContactingCarrier → TransferApproved (FOC date known).
    pub approved_at: Timestamp,
    /// TransferApproved → TransferPending (frozen).
    pub pending_at: Timestamp,
    /// FOC date: Completed.
    pub foc_at: Timestamp,
    /// Rejection by the losing carrier (instant, message): the order stays in
    /// `Error` from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<(Timestamp, String)>,
}

impl PortOrder {
    /// Whether the number was ported away at `now`.
    pub fn completed(&self, now: Timestamp) -> bool {
        self.error.is_none() && self.foc_at <= now
    }
}

/// A `Move-CsUser` in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ActiveMove {
    pub user: String,
    pub until: Timestamp,
}

/// A number as stored under `n/<number>`; `None` states mean "not in the tenant".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct NumberRecord {
    /// E.164 with `+`.
    pub telephone_number: String,
    pub row: Timeline<Option<NumberView>>,
    /// Operator that will upload this number as Operator Connect once its
    /// Direct Routing representation left the tenant.
    pub operator: Option<String>,
    /// Location the operator references when it sets the address at upload
    /// (the seeded user's); see `seed::operator_location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_location: Option<String>,
    /// Whether the operator upload was already scheduled or done.
    #[serde(default)]
    pub upload_scheduled: bool,
    /// Events the service will apply later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled: Vec<Scheduled>,
    /// Port-out order of the number, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortOrder>,
    /// Count of tenant-side changes (keys the latency draws).
    #[serde(default)]
    pub seq: u64,
}

/// Tenant-wide facts, under `meta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub tenant_id: String,
    pub seed: u64,
    pub users: u32,
    pub locations: Vec<String>,
    #[serde(default)]
    pub profile: Profile,
    /// Virtual instant the tenant was seeded (port orders and licence
    /// arrivals count from it).
    #[serde(default)]
    pub created_at: Timestamp,
}

/// A message the tenant sent to a user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Position in the outbox, from 1.
    pub seq: u64,
    /// Virtual time it was sent.
    pub at: Timestamp,
    /// Recipient UPN.
    pub user: String,
    /// `conferencing_info` or `conference_id_reset`.
    pub kind: String,
    /// Conference id the message gives (the new one after a reset).
    pub conference_id: Option<String>,
}

/// How an audited action ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AuditOutcome {
    /// The action succeeded.
    Ok,
    /// The action failed.
    Error {
        /// Classification.
        kind: ErrorKind,
        /// The message returned.
        message: String,
    },
}

/// One action received by the simulated tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Virtual time of the call.
    pub at: Timestamp,
    /// Operation.
    pub op: OperationKind,
    /// User argument, if any.
    pub user: Option<String>,
    /// Number argument, if any.
    pub number: Option<String>,
    /// The whole operation as JSON (`op` tag plus arguments).
    pub args: serde_json::Value,
    /// Result.
    pub outcome: AuditOutcome,
}

/// An out-of-service window of one user's number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutageRecord {
    /// UPN of the user.
    pub user: String,
    /// The number that went out of service.
    pub number: String,
    /// When the old number stopped routing (the removing call).
    pub start: Timestamp,
    /// When the new assignment became visibly active; `None` while the number
    /// is still out of service.
    pub end: Option<Timestamp>,
    /// `end - start`, or `now - start` while ongoing, in milliseconds.
    pub duration_ms: u64,
}

/// The true current state of a user (not the lagging view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// The cloud's user object as committed.
    pub cloud: UserView,
    /// msRTCSIP-Line in on-premises AD, if set.
    pub ad_line_uri: Option<String>,
    /// Licence SKUs.
    pub licences: Vec<String>,
    /// Emergency location to use for the user's Operator Connect number.
    pub oc_location_id: Option<String>,
    /// The Direct Routing number the user was seeded with.
    pub seeded_number: String,
    /// When reads will show `cloud` and `conferencing` (`None`: they already do).
    pub converges_at: Option<Timestamp>,
    /// The Skype for Business Server object, if the user exists on-premises.
    pub onprem: Option<OnPremUserView>,
    /// Audio conferencing as committed.
    pub conferencing: Option<ConferencingView>,
    /// Licences come from a group membership (cannot be removed per user).
    pub group_licensed: bool,
    /// How each licence reaches the user, one entry per path (truth).
    pub licence_assignments: Vec<LicenceAssignment>,
    /// Moved with `-Force`: contacts and meetings were NOT migrated.
    pub contacts_lost: bool,
    /// Seeded facts (see [`crate::backend::sim::tags`]).
    pub tags: Vec<String>,
}

/// Call counters (in memory, since the tenant was opened).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Calls received per operation name, observations included.
    pub calls: BTreeMap<String, u64>,
    /// Calls answered with `Throttled` (random faults and rate limit).
    pub throttled: u64,
    /// Of those, the ones refused by the rate limit.
    pub rate_limited: u64,
    /// Injected faults: transient errors plus random throttles.
    pub injected_faults: u64,
}
