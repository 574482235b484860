//! The simulated tenant (embedded default backend).
//!
//! [`SimTenant`] keeps a seeded Teams tenant in a sled database and reproduces
//! the behaviours the engine must cope with (DOMAIN.md 6.2): writes commit at
//! once but reads lag (minutes, rarely up to 24 h), on-premises changes wait
//! for a directory sync tick, the operator uploads Operator Connect numbers
//! only after the Direct Routing number left the tenant, documented errors,
//! injected transient faults and throttling. It records every action (audit
//! log) and every user's out-of-service window (outages).

mod config;
#[cfg(test)]
mod flow_tests;
mod model;
mod rng;
mod seed;
mod tenant;
#[cfg(test)]
mod tests;

pub use config::{
    FaultConfig, FocConfig, LatencyConfig, LicenceDelayConfig, PortConfig, Profile, SimConfig,
    UploadDelayConfig,
};
pub use model::{AuditEntry, AuditOutcome, OutageRecord, OutboxEntry, SimStats, UserState};
pub use seed::{
    location, tags, FOREIGN_LOCATION, INVALID_LOCATION, LOCATIONS, ONPREM_POOL, SEEDED_POLICY,
    THIRD_PARTY_ACP, UNVALIDATED_LOCATIONS,
};
pub use tenant::{SimError, SimTenant, OPERATOR_NAME};
