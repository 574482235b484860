//! The simulated tenant (embedded default backend).
//!
//! [`SimTenant`] keeps a seeded Teams tenant in a sled database and reproduces
//! the behaviours the engine must cope with (DOMAIN.md 6.2): writes commit at
//! once but reads lag (minutes, rarely up to 24 h), on-premises changes wait
//! for a directory sync tick, the operator uploads Operator Connect numbers
//! only after the Direct Routing number left the tenant, documented errors,
//! injected transient faults and throttling. It records every action (audit
//! log), every user's out-of-service window (outages) and every message it
//! sends (outbox).
//!
//! A tenant is seeded for one [`Profile`]: `direct_routing` (the default: DR
//! numbers to move to Operator Connect), `calling_plans` (Calling Plan numbers
//! with port-out orders to the operator), `on_premises` (users homed on Skype
//! for Business Server, to move to Teams) or `operator_connect` (OC numbers
//! whose emergency locations change). [`tags`] names the seeded cohorts
//! (cloud-created users, third-party conferencing, operator-locked numbers, …);
//! [`SimTenant::users_tagged`] finds them.

mod config;
mod db;
mod faults;
#[cfg(test)]
mod fidelity_tests;
#[cfg(test)]
mod flow_tests;
pub mod graph;
mod group_commit;
mod model;
mod name;
mod ops;
mod rng;
mod seed;
mod tenant;
#[cfg(test)]
mod tests;
mod timeline;

pub use config::{
    AddressModeShares, FaultConfig, FocConfig, LatencyConfig, LicenceDelayConfig, OperatorConfig,
    PortConfig, Profile, SimConfig, UploadDelayConfig, MAX_SIM_COUNT, MAX_SIM_DELAY, MAX_USERS,
};
pub use db::SimError;
pub use model::{AuditEntry, AuditOutcome, OutageRecord, OutboxEntry, SimStats, UserState};
pub use name::{check_tenant_name, TenantNameError, MAX_TENANT_NAME, TENANT_NAME_RULE};
pub use seed::{
    location, tags, FOREIGN_LOCATION, INVALID_LOCATION, LICENCE_GROUP, LOCATIONS, ONPREM_POOL,
    SEEDED_POLICY, THIRD_PARTY_ACP, UNVALIDATED_LOCATIONS,
};
pub use tenant::{SimTenant, TenantCheck, OPERATOR_NAME};
