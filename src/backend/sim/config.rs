//! Simulator configuration (the `backend:` block of a run file with `kind: sim`).

use serde::Deserialize;

/// Simulator knobs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seed for the tenant and every random draw.
    #[serde(default)]
    pub seed: u64,
    /// Number of users in the simulated tenant.
    #[serde(default)]
    pub users: u32,
}
