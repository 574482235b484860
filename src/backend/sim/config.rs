//! Simulator configuration (the `backend:` block of a run file with `kind: sim`).
//!
//! Every field has a default, so an empty block is a valid configuration. Durations
//! are humantime strings in YAML (`30s`, `10m`, `24h`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::AddressMode;
use crate::clock::duration;

/// Longest simulator delay or lag (an upload that never comes within a run
/// is a test case); keeps every delay draw far from overflow.
pub const MAX_SIM_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Simulator `users`: at most this many are seeded (100,000 take 13 s and
/// 3 GB of memory to seed).
pub const MAX_USERS: u32 = 100_000;
/// Simulator `max_concurrent_moves` and `faults.throttle_limit`, at most.
pub const MAX_SIM_COUNT: u32 = 100_000;

/// Simulator knobs.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seed for the tenant and every random draw.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of users seeded into a new tenant (ignored when the store already
    /// holds a tenant).
    #[serde(default = "default_users")]
    pub users: u32,
    /// How long until a committed write becomes visible in reads.
    #[serde(default)]
    pub latency: LatencyConfig,
    /// Period of the Entra Connect directory sync; ticks fall on multiples of
    /// the interval counted from the Unix epoch.
    #[serde(default = "default_dirsync_interval", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub dirsync_interval: Duration,
    /// How long after a Direct Routing number left the tenant the operator
    /// uploads it as an Operator Connect number.
    #[serde(default)]
    pub operator_upload_delay: UploadDelayConfig,
    /// Injected failures.
    #[serde(default)]
    pub faults: FaultConfig,
    /// Which migration the seeded tenant starts from (only applies when the
    /// tenant is created; a stored tenant keeps its profile).
    #[serde(default)]
    pub profile: Profile,
    /// Calling Plan port-out orders (profile `calling_plans`).
    #[serde(default)]
    pub port: PortConfig,
    /// Operations this simulated tenant does not automate, like the real
    /// backends (e.g. `[reset_conference_id]`): the engine turns them into manual
    /// tasks, and the tenant refuses them if called anyway.
    #[serde(default)]
    pub manual: Vec<crate::backend::OperationKind>,
    /// Most `Move-CsUser` moves in progress at once (profile `on_premises`).
    #[serde(default = "default_max_concurrent_moves")]
    pub max_concurrent_moves: u32,
    /// Delay of group-based licensing for on-premises users (profile
    /// `on_premises`; drawn per user at seeding).
    #[serde(default)]
    pub licence_delay: LicenceDelayConfig,
    /// The operator that uploads Operator Connect numbers, and how it sets
    /// their emergency addresses.
    #[serde(default)]
    pub operator: OperatorConfig,
    /// Name of a shared simulated tenant (`<state>/sim/<name>`); by default each
    /// run gets a fresh tenant of its own, named after the run id.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: default_seed(),
            users: default_users(),
            latency: LatencyConfig::default(),
            dirsync_interval: default_dirsync_interval(),
            operator_upload_delay: UploadDelayConfig::default(),
            faults: FaultConfig::default(),
            profile: Profile::default(),
            port: PortConfig::default(),
            max_concurrent_moves: default_max_concurrent_moves(),
            licence_delay: LicenceDelayConfig::default(),
            manual: Vec::new(),
            operator: OperatorConfig::default(),
            tenant: None,
        }
    }
}

impl SimConfig {
    /// A configuration for quick demos and tests: defaults without faults and
    /// without the 24-hour tail, so every change converges within 10 virtual
    /// minutes (1 real second at `time_scale` 600), directory sync every 10
    /// minutes and operator uploads after 1 to 5 minutes.
    pub fn fast() -> SimConfig {
        SimConfig {
            latency: LatencyConfig {
                tail_rate: 0.0,
                ..LatencyConfig::default()
            },
            dirsync_interval: Duration::from_secs(600),
            operator_upload_delay: UploadDelayConfig {
                min: Duration::from_secs(60),
                max: Duration::from_secs(300),
            },
            ..SimConfig::default()
        }
    }
}

impl SimConfig {
    /// Knobs out of bounds (listed with every bound in `spec::limits`), as (path below
    /// `backend`, message). Each bound keeps seeding and delay draws finite.
    pub fn problems(&self) -> Vec<(String, String)> {
        use crate::clock::human_duration;
        let mut out = Vec::new();
        if self.users > MAX_USERS {
            out.push((
                "users".into(),
                format!(
                    "users: at most {MAX_USERS} simulated users, got {}",
                    self.users
                ),
            ));
        }
        let counts = [
            ("max_concurrent_moves", Some(self.max_concurrent_moves)),
            ("faults.throttle_limit", self.faults.throttle_limit),
        ];
        for (path, v) in counts {
            if let Some(v) = v.filter(|v| !(1..=MAX_SIM_COUNT).contains(v)) {
                out.push((
                    path.into(),
                    format!("{path} must be between 1 and {MAX_SIM_COUNT}, got {v}"),
                ));
            }
        }
        let rates = [
            ("latency.tail_rate", self.latency.tail_rate),
            ("port.error_rate", self.port.error_rate),
            ("faults.transient_rate", self.faults.transient_rate),
            ("faults.throttle_rate", self.faults.throttle_rate),
        ];
        for (path, v) in rates {
            if !(0.0..=1.0).contains(&v) {
                out.push((
                    path.into(),
                    format!("{path} is a probability between 0 and 1, got {v}"),
                ));
            }
        }
        let spans = [
            ("latency.min", self.latency.min),
            ("latency.typical_max", self.latency.typical_max),
            ("latency.tail_max", self.latency.tail_max),
            ("dirsync_interval", self.dirsync_interval),
            ("operator_upload_delay.min", self.operator_upload_delay.min),
            ("operator_upload_delay.max", self.operator_upload_delay.max),
            ("port.foc_after.min", self.port.foc_after.min),
            ("port.foc_after.max", self.port.foc_after.max),
            ("licence_delay.min", self.licence_delay.min),
            ("licence_delay.max", self.licence_delay.max),
        ];
        for (path, d) in spans {
            if d > MAX_SIM_DELAY {
                out.push((
                    path.into(),
                    format!(
                        "{path}: {} is longer than {}",
                        human_duration(d),
                        human_duration(MAX_SIM_DELAY)
                    ),
                ));
            }
        }
        if self.dirsync_interval < Duration::from_secs(1) {
            out.push((
                "dirsync_interval".into(),
                "dirsync_interval must be at least 1s".into(),
            ));
        }
        // The first repeat only: the list may be long.
        let mut seen = std::collections::HashSet::new();
        if let Some(i) = self.manual.iter().position(|op| !seen.insert(*op)) {
            out.push((
                format!("manual[{i}]"),
                format!("manual lists `{}` twice", self.manual[i]),
            ));
        }
        out
    }
}

/// The migration a seeded tenant is set up for.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Users on Direct Routing numbers (30% set in on-premises AD), to move to
    /// Operator Connect.
    #[default]
    DirectRouting,
    /// Users on Microsoft Calling Plan numbers being ported out to the operator.
    CallingPlans,
    /// Users homed on Skype for Business Server, to move to Teams with Direct
    /// Routing.
    OnPremises,
    /// Users already on Operator Connect numbers whose emergency locations change.
    OperatorConnect,
}

impl Profile {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::DirectRouting => "direct_routing",
            Profile::CallingPlans => "calling_plans",
            Profile::OnPremises => "on_premises",
            Profile::OperatorConnect => "operator_connect",
        }
    }
}

/// The simulated Operator Connect operator.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Operator name (`PstnPartnerName`; default `Contoso Telecom`). Applies
    /// to numbers seeded or uploaded after the change.
    #[serde(default = "default_operator_name")]
    pub name: String,
    /// Shares of the emergency-address modes the operator uploads numbers
    /// with, drawn per number from the seed. Default: every upload
    /// `tenant_assigns` in the migration profiles, 60/30/10 in
    /// `operator_connect`.
    #[serde(default)]
    pub address_modes: Option<AddressModeShares>,
}

impl Default for OperatorConfig {
    fn default() -> OperatorConfig {
        OperatorConfig {
            name: default_operator_name(),
            address_modes: None,
        }
    }
}

impl OperatorConfig {
    /// The shares in force for a tenant of `profile`.
    pub fn shares(&self, profile: Profile) -> AddressModeShares {
        self.address_modes.unwrap_or(match profile {
            Profile::OperatorConnect => AddressModeShares {
                operator_assigns: 0.6,
                tenant_assigns: 0.3,
                operator_locked: 0.1,
            },
            _ => AddressModeShares {
                operator_assigns: 0.0,
                tenant_assigns: 1.0,
                operator_locked: 0.0,
            },
        })
    }
}

/// Relative weights of the three emergency-address modes (DOMAIN 3.2): each
/// at least 0, their sum above 0 (they need not add up to 1).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, try_from = "AddressModeSharesWire")]
pub struct AddressModeShares {
    /// The operator sets the address; the tenant may change it.
    pub operator_assigns: f64,
    /// Uploaded without an address; the tenant assigns it.
    pub tenant_assigns: f64,
    /// The operator sets and locks the address.
    pub operator_locked: f64,
}

impl AddressModeShares {
    /// The mode a uniform draw `u` in `[0, 1)` falls on.
    pub fn pick(&self, u: f64) -> AddressMode {
        let total = self.operator_assigns + self.tenant_assigns + self.operator_locked;
        let x = u * total;
        if x < self.operator_assigns {
            AddressMode::OperatorAssigns
        } else if x < self.operator_assigns + self.tenant_assigns || self.operator_locked <= 0.0 {
            AddressMode::TenantAssigns
        } else {
            AddressMode::OperatorLocked
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddressModeSharesWire {
    #[serde(default, deserialize_with = "share")]
    #[schemars(range(min = 0.0))]
    operator_assigns: f64,
    #[serde(default, deserialize_with = "share")]
    #[schemars(range(min = 0.0))]
    tenant_assigns: f64,
    #[serde(default, deserialize_with = "share")]
    #[schemars(range(min = 0.0))]
    operator_locked: f64,
}

impl TryFrom<AddressModeSharesWire> for AddressModeShares {
    type Error = String;
    fn try_from(w: AddressModeSharesWire) -> Result<AddressModeShares, String> {
        if w.operator_assigns + w.tenant_assigns + w.operator_locked > 0.0 {
            Ok(AddressModeShares {
                operator_assigns: w.operator_assigns,
                tenant_assigns: w.tenant_assigns,
                operator_locked: w.operator_locked,
            })
        } else {
            Err(
                "address_modes: the shares of operator_assigns, tenant_assigns and \
                 operator_locked add up to 0; give at least one a share above 0"
                    .into(),
            )
        }
    }
}

/// A share: a finite number, at least 0.
fn share<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "a share must be a number of at least 0, got {v}"
        )))
    }
}

/// Port-out orders of Calling Plan numbers.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Time from the order's creation (tenant seeding) to the FOC date.
    #[serde(default)]
    pub foc_after: FocConfig,
    /// Share of orders the losing carrier rejects (status `Error`), in `[0, 1]`
    /// (default 0).
    #[serde(default)]
    pub error_rate: f64,
}

impl Default for PortConfig {
    fn default() -> PortConfig {
        PortConfig {
            foc_after: FocConfig::default(),
            error_rate: 0.0,
        }
    }
}

/// FOC date of a port order, uniform in `[min, max]` after its creation.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FocConfig {
    /// Earliest (default 2h: demo scale; real orders take 7 to 14 days).
    #[serde(default = "default_foc_min", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub min: Duration,
    /// Latest (default 8h).
    #[serde(default = "default_foc_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub max: Duration,
}

impl Default for FocConfig {
    fn default() -> FocConfig {
        FocConfig {
            min: default_foc_min(),
            max: default_foc_max(),
        }
    }
}

/// Delay of group-based licensing, uniform in `[min, max]`.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceDelayConfig {
    /// Shortest delay (default 0s).
    #[serde(default, deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub min: Duration,
    /// Longest delay (default 2h).
    #[serde(default = "default_licence_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub max: Duration,
}

impl Default for LicenceDelayConfig {
    fn default() -> LicenceDelayConfig {
        LicenceDelayConfig {
            min: Duration::ZERO,
            max: default_licence_max(),
        }
    }
}

/// Read-side lag: most draws in `[min, typical_max]` skewed toward `min`, a
/// fraction `tail_rate` uniform in `(typical_max, tail_max]`.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Shortest lag (default 30s).
    #[serde(default = "default_latency_min", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub min: Duration,
    /// Upper end of the usual lag (default 10m).
    #[serde(default = "default_latency_typical_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub typical_max: Duration,
    /// Probability of a long-tail lag (default 0.02).
    #[serde(default = "default_tail_rate")]
    pub tail_rate: f64,
    /// Longest lag (default 24h).
    #[serde(default = "default_latency_tail_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub tail_max: Duration,
}

impl Default for LatencyConfig {
    fn default() -> LatencyConfig {
        LatencyConfig {
            min: default_latency_min(),
            typical_max: default_latency_typical_max(),
            tail_rate: default_tail_rate(),
            tail_max: default_latency_tail_max(),
        }
    }
}

/// Delay of the operator's upload of a migrated number, uniform in `[min, max]`.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadDelayConfig {
    /// Shortest delay (default 15m).
    #[serde(default = "default_upload_min", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub min: Duration,
    /// Longest delay (default 2h).
    #[serde(default = "default_upload_max", deserialize_with = "duration")]
    #[schemars(with = "crate::spec::schema::DurationText")]
    pub max: Duration,
}

impl Default for UploadDelayConfig {
    fn default() -> UploadDelayConfig {
        UploadDelayConfig {
            min: default_upload_min(),
            max: default_upload_max(),
        }
    }
}

/// Injected failures. Rates are probabilities per call in `[0, 1]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// "Service is unavailable. Please try again" (default 0).
    #[serde(default)]
    pub transient_rate: f64,
    /// Random 429 "Too Many Requests", half of them with Retry-After (default 0).
    #[serde(default)]
    pub throttle_rate: f64,
    /// Calls allowed per virtual second (token bucket); `None` = unlimited.
    #[serde(default)]
    pub throttle_limit: Option<u32>,
}

fn default_operator_name() -> String {
    super::tenant::OPERATOR_NAME.to_string()
}
fn default_seed() -> u64 {
    42
}
fn default_users() -> u32 {
    200
}
fn default_dirsync_interval() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max_concurrent_moves() -> u32 {
    25
}
fn default_foc_min() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_foc_max() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_licence_max() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_latency_min() -> Duration {
    Duration::from_secs(30)
}
fn default_latency_typical_max() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_tail_rate() -> f64 {
    0.02
}
fn default_latency_tail_max() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_upload_min() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_upload_max() -> Duration {
    Duration::from_secs(2 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_block_gives_defaults() {
        let c: SimConfig = serde_yaml::from_str("{}").unwrap_or_else(|_| SimConfig::fast());
        assert_eq!(c, SimConfig::default());
        assert_eq!(c.seed, 42);
        assert_eq!(c.users, 200);
        assert_eq!(c.latency.tail_max, Duration::from_secs(86_400));
        assert_eq!(c.profile, Profile::DirectRouting);
        assert_eq!(c.max_concurrent_moves, 25);
        assert_eq!(c.port.foc_after.max, Duration::from_secs(8 * 3600));
        assert_eq!(c.port.error_rate, 0.0);
        assert_eq!(c.licence_delay.max, Duration::from_secs(7200));
    }

    #[test]
    fn profile_and_port_knobs_parse() {
        let c: Result<SimConfig, _> = serde_yaml::from_str(
            "profile: calling_plans\nport: {foc_after: {min: 1h, max: 3h}, error_rate: 0.2}\n\
             max_concurrent_moves: 5\nlicence_delay: {max: 10m}\n",
        );
        let c = c.unwrap_or_default();
        assert_eq!(c.profile, Profile::CallingPlans);
        assert_eq!(c.port.foc_after.min, Duration::from_secs(3600));
        assert_eq!(c.port.error_rate, 0.2);
        assert_eq!(c.max_concurrent_moves, 5);
        assert_eq!(c.licence_delay.max, Duration::from_secs(600));
        let bad: Result<SimConfig, _> = serde_yaml::from_str("profile: pbx\n");
        assert!(bad.is_err());
    }

    #[test]
    fn humantime_durations_and_unknown_fields() {
        let c: Result<SimConfig, _> = serde_yaml::from_str(
            "seed: 7\nusers: 10\nlatency: {min: 1s, typical_max: 2m}\ndirsync_interval: 5m\n\
             faults: {transient_rate: 0.1, throttle_limit: 20}\n",
        );
        let c = c.unwrap_or_default();
        assert_eq!(c.seed, 7);
        assert_eq!(c.latency.min, Duration::from_secs(1));
        assert_eq!(c.latency.typical_max, Duration::from_secs(120));
        assert_eq!(c.latency.tail_rate, 0.02);
        assert_eq!(c.dirsync_interval, Duration::from_secs(300));
        assert_eq!(c.faults.throttle_limit, Some(20));
        let bad: Result<SimConfig, _> = serde_yaml::from_str("sed: 1\n");
        assert!(bad.is_err());
        let bad: Result<SimConfig, _> = serde_yaml::from_str("latency: {mn: 1s}\n");
        assert!(bad.is_err());
    }

    #[test]
    fn operator_block_parses_and_rejects_bad_shares_at_their_position() {
        let c: Result<SimConfig, _> = serde_yaml::from_str(
            "operator:\n  name: Fabrikam\n  address_modes: {operator_assigns: 6, tenant_assigns: 3, operator_locked: 1}\n",
        );
        let c = c.unwrap_or_default();
        assert_eq!(c.operator.name, "Fabrikam");
        let s = c.operator.shares(Profile::DirectRouting);
        assert_eq!(s.pick(0.0), AddressMode::OperatorAssigns);
        assert_eq!(s.pick(0.65), AddressMode::TenantAssigns);
        assert_eq!(s.pick(0.95), AddressMode::OperatorLocked);
        // Defaults: all tenant-assigns in migrations, 60/30/10 for operator_connect.
        let d = SimConfig::default().operator;
        assert_eq!(d.name, "Contoso Telecom");
        assert_eq!(
            d.shares(Profile::CallingPlans).pick(0.0),
            AddressMode::TenantAssigns
        );
        assert_eq!(
            d.shares(Profile::CallingPlans).pick(0.999),
            AddressMode::TenantAssigns
        );
        let oc = d.shares(Profile::OperatorConnect);
        assert_eq!(oc.pick(0.59), AddressMode::OperatorAssigns);
        assert_eq!(oc.pick(0.61), AddressMode::TenantAssigns);
        assert_eq!(oc.pick(0.91), AddressMode::OperatorLocked);
        // One mode only.
        let only: Result<SimConfig, _> =
            serde_yaml::from_str("operator: {address_modes: {operator_locked: 1}}\n");
        let only = only
            .unwrap_or_default()
            .operator
            .shares(Profile::DirectRouting);
        assert_eq!(only.pick(0.0), AddressMode::OperatorLocked);

        let err = |text: &str| match serde_yaml::from_str::<SimConfig>(text) {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => e.to_string(),
        };
        let e = err("seed: 1\noperator:\n  address_modes:\n    operator_assigns: -0.5\n");
        assert!(e.contains("at least 0") && e.contains("line 4"), "{e}");
        let e = err("operator:\n  address_modes: {operator_assigns: 0, tenant_assigns: 0}\n");
        assert!(e.contains("add up to 0") && e.contains("line 2"), "{e}");
        let e = err("operator: {address_modes: {tenant: 1}}\n");
        assert!(e.contains("unknown field"), "{e}");
        let e = err("operator: {nme: x}\n");
        assert!(e.contains("unknown field"), "{e}");
    }
}
