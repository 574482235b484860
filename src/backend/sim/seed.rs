//! Seeding a new tenant for one of the migration profiles, and the tenant's
//! fixed catalog of emergency locations.
//!
//! Every draw is keyed by the seed, what it is for and the user index, so the
//! same seed gives the same tenant (relative to the instant it was created).

use std::time::Duration;

use super::config::{Profile, SimConfig};
use super::db::{guid, number_key, sealed, seeded_number, seeded_upn, user_key};
use super::model::{EventKind, Meta, NumberRecord, PortOrder, Scheduled, Timeline, UserRecord};
use super::rng::Key;
use crate::backend::{
    AddressMode, ConferencingView, Homing, LicenceAssignment, LocationView, NumberType, NumberView,
    OnPremUserView, UserView,
};
use crate::clock::Timestamp;

/// Validated US emergency locations every seeded tenant has (the ones seeded
/// users and exported subjects use).
pub const LOCATIONS: &[&str] = &[
    "loc-sea-01",
    "loc-nyc-01",
    "loc-chi-01",
    "loc-sfo-01",
    "loc-atl-01",
];

/// US locations whose civic address is not validated yet (cannot be assigned).
pub const UNVALIDATED_LOCATIONS: &[&str] = &["loc-new-01", "loc-new-02"];

/// A US location whose civic address failed validation.
pub const INVALID_LOCATION: &str = "loc-bad-01";

/// A validated location in another country (GB).
pub const FOREIGN_LOCATION: &str = "loc-lon-01";

/// Online voice routing policy seeded Direct Routing users hold.
pub const SEEDED_POLICY: &str = "DR-Global-Route";

/// Name of the seeded users' third-party audio conferencing provider.
pub const THIRD_PARTY_ACP: &str = "PGi";

/// Registrar pool of the seeded Skype for Business Server deployment.
pub const ONPREM_POOL: &str = "sfbpool01.contoso.com";

/// Display name of the group seeded group-licensed users inherit their
/// licences from.
pub const LICENCE_GROUP: &str = "Teams Phone Users";

/// Seeded facts about a user, as listed in [`super::UserState::tags`] and
/// searched by [`SimTenant::users_tagged`](super::SimTenant::users_tagged).
pub mod tags {
    /// Licences inherited from a group: `remove_licence` is refused.
    pub const GROUP_LICENSED: &str = "group_licensed";
    /// Audio conferencing with a third-party provider (no Microsoft id).
    pub const CONF_THIRD_PARTY: &str = "conf_third_party";
    /// No audio conferencing at all.
    pub const CONF_NONE: &str = "conf_none";
    /// `calling_plans`: the port order ends in `Error`.
    pub const PORT_ERROR: &str = "port_error";
    /// `on_premises`: created in the cloud (not on-premises, not dir-synced).
    pub const CLOUD_CREATED: &str = "cloud_created";
    /// `on_premises`: already homed online (move refused).
    pub const ALREADY_ONLINE: &str = "already_online";
    /// `on_premises`: group licensing never brings Phone System (MCOEV).
    pub const NO_PHONE_SYSTEM: &str = "no_phone_system";
    /// `operator_connect`: the operator set the address; the tenant may change it.
    pub const OC_OPERATOR_ASSIGNED: &str = "oc_operator_assigned";
    /// `operator_connect`: uploaded without address; the tenant assigns it.
    pub const OC_TENANT_ASSIGNS: &str = "oc_tenant_assigns";
    /// `operator_connect`: the operator locked the address.
    pub const OC_LOCKED: &str = "oc_locked";
    /// `operator_connect`: the exported target location is not validated.
    pub const TARGET_NOT_VALIDATED: &str = "target_not_validated";
    /// `calling_plans`: homed online but in Islands mode, not TeamsOnly, so
    /// an Operator Connect (or Calling Plan) number is refused.
    pub const NOT_TEAMS_ONLY: &str = "not_teams_only";
}

/// (id, civic address id, description, country, validation status).
const CATALOG: &[(&str, &str, &str, &str, &str)] = &[
    ("loc-sea-01", "civ-sea", "Seattle HQ", "US", "Validated"),
    (
        "loc-nyc-01",
        "civ-nyc",
        "New York office",
        "US",
        "Validated",
    ),
    ("loc-chi-01", "civ-chi", "Chicago office", "US", "Validated"),
    (
        "loc-sfo-01",
        "civ-sfo",
        "San Francisco office",
        "US",
        "Validated",
    ),
    ("loc-atl-01", "civ-atl", "Atlanta office", "US", "Validated"),
    (
        "loc-new-01",
        "civ-new1",
        "Austin office (new)",
        "US",
        "NotValidated",
    ),
    (
        "loc-new-02",
        "civ-new2",
        "Denver office (new)",
        "US",
        "NotValidated",
    ),
    (
        "loc-bad-01",
        "civ-bad",
        "Warehouse (bad address)",
        "US",
        "Invalid",
    ),
    ("loc-lon-01", "civ-lon", "London office", "GB", "Validated"),
];

/// An emergency location of the tenant, `None` if unknown.
pub fn location(id: &str) -> Option<LocationView> {
    CATALOG
        .iter()
        .find(|(l, ..)| *l == id)
        .map(|(l, c, d, country, v)| LocationView {
            location_id: (*l).into(),
            civic_address_id: (*c).into(),
            description: (*d).into(),
            country: (*country).into(),
            validation_status: (*v).into(),
        })
}

const PORT_ERRORS: &[&str] = &[
    "Account name mismatch with the losing carrier",
    "Service address mismatch with the losing carrier",
    "Account number or PIN does not match the losing carrier's records",
    "Billing telephone number (BTN) mismatch",
    "The losing carrier reports a pending service order on the account",
];

/// Canadian area codes: `+1` numbers with one of these are `CA`, every other
/// `+1` number `US` (other NANP countries are not modelled).
const CA_AREA_CODES: &[&str] = &[
    "204", "226", "236", "249", "250", "257", "263", "289", "306", "343", "354", "365", "367",
    "368", "382", "403", "416", "418", "428", "431", "437", "438", "450", "468", "474", "506",
    "514", "519", "548", "579", "581", "584", "587", "604", "613", "639", "647", "672", "683",
    "705", "709", "742", "753", "778", "780", "782", "807", "819", "825", "867", "873", "879",
    "902", "905",
];

/// Country calling codes the simulator knows, longest first where they share
/// digits: (prefix without `+`, ISO 3166 alpha-2).
const COUNTRY_CODES: &[(&str, &str)] = &[
    ("353", "IE"),
    ("44", "GB"),
    ("33", "FR"),
    ("49", "DE"),
    ("31", "NL"),
    ("61", "AU"),
];

/// Country of an E.164 number (with or without `+`), from its calling code:
/// `+1` is `CA` for Canadian area codes and `US` otherwise; `+44` `GB`,
/// `+353` `IE`, `+33` `FR`, `+49` `DE`, `+31` `NL`, `+61` `AU`. `None` for
/// any other prefix (the simulator cannot tell).
pub fn country_of(e164: &str) -> Option<&'static str> {
    let digits = e164.trim().trim_start_matches('+');
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(rest) = digits.strip_prefix('1') {
        let area = rest.get(..3)?;
        return Some(if CA_AREA_CODES.contains(&area) {
            "CA"
        } else {
            "US"
        });
    }
    COUNTRY_CODES
        .iter()
        .find(|(p, _)| digits.starts_with(p) && digits.len() > p.len())
        .map(|(_, c)| *c)
}

/// The location an operator references when it sets a number's emergency
/// address at upload: `preferred` (the seeded user's) if it exists, is
/// validated and is in `country`, else the first validated location of the
/// catalog in `country`; `None` when the tenant has none there.
pub(crate) fn operator_location(country: &str, preferred: Option<&str>) -> Option<String> {
    let usable = |l: &LocationView| l.validation_status == "Validated" && l.country == country;
    preferred
        .and_then(location)
        .filter(usable)
        .or_else(|| {
            CATALOG
                .iter()
                .filter_map(|(id, ..)| location(id))
                .find(usable)
        })
        .map(|l| l.location_id)
}

/// Licence SKU → feature type shown by `Get-CsOnlineUser`.
pub(crate) fn features(licences: &[String]) -> Vec<String> {
    licences
        .iter()
        .filter_map(|l| match l.as_str() {
            "Teams" => Some("Teams"),
            "MCOEV" => Some("PhoneSystem"),
            "MCOPSTN1" | "MCOPSTN2" => Some("CallingPlan"),
            "MCOMEETADD" => Some("AudioConferencing"),
            _ => None,
        })
        .map(str::to_string)
        .collect()
}

/// A 7-digit conference id from a key.
pub(crate) fn conference_id(k: Key) -> String {
    format!("{}", 1_000_000 + k.bits() % 9_000_000)
}

/// Build a new tenant: metadata plus every user and number, in one batch.
pub(crate) fn seed(config: &SimConfig, now: Timestamp) -> (Meta, sled::Batch) {
    let root = Key::new(config.seed);
    let meta = Meta {
        tenant_id: guid(root.str("tenant")),
        seed: config.seed,
        users: config.users,
        locations: LOCATIONS.iter().map(|s| s.to_string()).collect(),
        profile: config.profile,
        created_at: now,
    };
    let mut batch = sled::Batch::default();
    for i in 1..=config.users {
        let (u, n) = seed_user(config, &meta, i);
        let key = user_key(&u.cloud.base.upn);
        let value = sealed(&key, &u);
        batch.insert(key.into_bytes(), value);
        if let Some(n) = n {
            let key = number_key(&n.telephone_number);
            let value = sealed(&key, &n);
            batch.insert(key.into_bytes(), value);
        }
    }
    batch.insert("meta", sealed("meta", &meta));
    (meta, batch)
}

fn seed_user(config: &SimConfig, meta: &Meta, i: u32) -> (UserRecord, Option<NumberRecord>) {
    let root = Key::new(meta.seed);
    let draw = |what: &str| root.str(what).int(u64::from(i));
    let upn = seeded_upn(i);
    let number = seeded_number(i);
    let id = guid(root.str("user-id").int(u64::from(i)));
    let on_prem = draw("on-prem").unit() < ON_PREM_SHARE;
    let loc = draw("location").bits() % meta.locations.len() as u64;
    let location = meta.locations.get(loc as usize).cloned();
    let mut tags = Vec::new();

    // Audio conferencing, in every profile.
    let c = draw("conf").unit();
    let conferencing = if c < 0.90 {
        Some(ConferencingView {
            provider: "Microsoft".into(),
            conference_id: Some(conference_id(draw("conf-id"))),
            toll_number: Some("+14255550100".into()),
        })
    } else if c < 0.95 {
        tags.push(tags::CONF_THIRD_PARTY.to_string());
        Some(ConferencingView {
            provider: THIRD_PARTY_ACP.into(),
            conference_id: None,
            toll_number: Some("+18665550123".into()),
        })
    } else {
        tags.push(tags::CONF_NONE.to_string());
        None
    };
    let microsoft_ac = conferencing
        .as_ref()
        .is_some_and(|c| c.provider == "Microsoft");
    let group_licensed = match meta.profile {
        Profile::OnPremises => false,
        _ => draw("group-licence").unit() < 0.03,
    };

    let mut licences: Vec<String> = match meta.profile {
        Profile::CallingPlans => vec!["Teams", "MCOEV", "MCOProfessional", "MCOPSTN1"],
        _ => vec!["Teams", "MCOEV", "MCOProfessional"],
    }
    .into_iter()
    .map(str::to_string)
    .collect();
    if microsoft_ac {
        licences.push("MCOMEETADD".into());
    }

    let mut view = UserView {
        id: id.clone(),
        upn: upn.clone(),
        sip_address: upn.clone(),
        usage_location: "US".into(),
        homed: Homing::Online,
        hosting_provider: "sipfed.online.lync.com".into(),
        interpreted_user_type: "DirSyncEnabledOnlineTeamsOnlyUser".into(),
        teams_upgrade_effective_mode: "TeamsOnly".into(),
        line_uri: Some(number.clone()),
        on_prem_line_uri: None,
        enterprise_voice_enabled: true,
        online_voice_routing_policy: None,
        feature_types: Vec::new(),
        licences: Vec::new(),
        dir_synced: true,
        hosted_voicemail: true,
        account_type: "User".into(),
        licence_assignments: Vec::new(),
    };
    let mut user = UserRecord {
        index: i,
        cloud: Timeline::new(view.clone()),
        ad_line: None,
        licences: Vec::new(),
        oc_location_id: location.clone(),
        seeded_number: number.clone(),
        seq: 0,
        released: Vec::new(),
        scheduled: Vec::new(),
        outages: Vec::new(),
        onprem: None,
        conferencing: Timeline::new(conferencing),
        retired_conference_ids: Vec::new(),
        conference_resets: 0,
        group_licensed,
        licence_assignments: Vec::new(),
        contacts_lost: false,
        moved_at: None,
        tags: Vec::new(),
    };
    let mut row = NumberView {
        telephone_number: number.clone(),
        number_type: NumberType::DirectRouting,
        activation_state: "Activated".into(),
        pstn_assignment_status: "UserAssigned".into(),
        assigned_pstn_target_id: Some(id.clone()),
        location_id: None,
        number_source: "Online".into(),
        pstn_partner_name: None,
        iso_country_code: country_of(&number).unwrap_or("US").into(),
        location_update_supported: true,
        address_mode: AddressMode::TenantAssigns.as_str().into(),
    };
    let mut number_rec = NumberRecord {
        row: Timeline::new(None),
        telephone_number: number.clone(),
        operator: None,
        operator_location: location.clone(),
        upload_scheduled: false,
        scheduled: Vec::new(),
        port: None,
        seq: 0,
    };
    let operator_name = &config.operator.name;

    let mut with_number = true;
    match meta.profile {
        Profile::DirectRouting => {
            view.on_prem_line_uri = on_prem.then(|| number.clone());
            view.online_voice_routing_policy = Some(SEEDED_POLICY.into());
            user.ad_line = on_prem.then(|| number.clone());
            if on_prem {
                row.number_source = "OnPremises".into();
            }
            number_rec.operator = Some(operator_name.clone());
        }
        Profile::CallingPlans => {
            row.number_type = NumberType::CallingPlan;
            row.pstn_partner_name = Some("Microsoft".into());
            row.location_id = location.clone();
            number_rec.operator = Some(operator_name.clone());
            if draw("cp-islands").unit() < NOT_TEAMS_ONLY_SHARE {
                // Homed online, never upgraded: Islands.
                tags.push(tags::NOT_TEAMS_ONLY.to_string());
                view.teams_upgrade_effective_mode = "Islands".into();
                // UNCERTAIN: the InterpretedUserType of an online Islands user.
                view.interpreted_user_type = "DirSyncEnabledOnlineSfBUser".into();
            }
            let port = port_order(config, meta, i);
            if port.error.is_some() {
                tags.push(tags::PORT_ERROR.to_string());
            } else {
                for rec_sched in [&mut user.scheduled, &mut number_rec.scheduled] {
                    rec_sched.push(Scheduled {
                        at: port.foc_at,
                        visible_at: port.foc_at,
                        kind: EventKind::PortCompleted {
                            number: number.clone(),
                        },
                    });
                }
            }
            number_rec.port = Some(port);
        }
        Profile::OnPremises => {
            with_number = false;
            view.line_uri = None;
            view.enterprise_voice_enabled = false;
            view.hosted_voicemail = false;
            let cohort = draw("onprem-cohort").unit();
            if cohort < 0.03 {
                // Created in the cloud: never on-premises, licensed directly.
                tags.push(tags::CLOUD_CREATED.to_string());
                view.dir_synced = false;
                view.interpreted_user_type = "PureOnlineTeamsOnlyUser".into();
            } else {
                user.group_licensed = true;
                tags.push(tags::GROUP_LICENSED.to_string());
                let already_online = cohort < 0.06;
                user.onprem = Some(OnPremUserView {
                    upn: upn.clone(),
                    sip_address: upn.clone(),
                    enterprise_voice_enabled: false,
                    line_uri: None,
                    registrar_pool: ONPREM_POOL.into(),
                    homed: if already_online {
                        Homing::Online
                    } else {
                        Homing::OnPremises
                    },
                });
                if already_online {
                    tags.push(tags::ALREADY_ONLINE.to_string());
                    view.interpreted_user_type = "HybridOnlineTeamsOnlyUser".into();
                } else {
                    if draw("no-mcoev").unit() < 0.04 {
                        tags.push(tags::NO_PHONE_SYSTEM.to_string());
                        licences.retain(|l| l != "MCOEV");
                    }
                    view.homed = Homing::OnPremises;
                    view.hosting_provider = "SRV:".into();
                    view.interpreted_user_type = "HybridOnpremSfBUserNeedsProvisioning".into();
                    view.teams_upgrade_effective_mode = "Islands".into();
                    view.account_type = "SfBOnPremUser".into();
                    let d = &config.licence_delay;
                    let at = meta
                        .created_at
                        .plus(draw("licence-delay").between(d.min, d.max.max(d.min)));
                    user.scheduled.push(Scheduled {
                        at,
                        visible_at: at,
                        kind: EventKind::LicencesArrive {
                            skus: std::mem::take(&mut licences),
                        },
                    });
                }
            }
        }
        Profile::OperatorConnect => {
            row.number_type = NumberType::OperatorConnect;
            row.pstn_partner_name = Some(operator_name.clone());
            let shares = config.operator.shares(meta.profile);
            let mut mode = shares.pick(draw("oc-mode").unit());
            let address = operator_location(&row.iso_country_code, location.as_deref());
            if address.is_none() {
                // No address in the country to reference: uploaded without one.
                mode = AddressMode::TenantAssigns;
            }
            tags.push(
                match mode {
                    AddressMode::OperatorAssigns => tags::OC_OPERATOR_ASSIGNED,
                    AddressMode::TenantAssigns => tags::OC_TENANT_ASSIGNS,
                    AddressMode::OperatorLocked => tags::OC_LOCKED,
                }
                .to_string(),
            );
            if mode.operator_sets_address() {
                row.location_id = address;
            }
            row.location_update_supported = mode != AddressMode::OperatorLocked;
            row.address_mode = mode.as_str().into();
            let t = draw("oc-target");
            user.oc_location_id = if t.unit() < 0.05 {
                tags.push(tags::TARGET_NOT_VALIDATED.to_string());
                let k = (t.bits() % UNVALIDATED_LOCATIONS.len() as u64) as usize;
                UNVALIDATED_LOCATIONS.get(k).map(|s| s.to_string())
            } else {
                let k = (t.int(1).bits() % LOCATIONS.len() as u64) as usize;
                LOCATIONS.get(k).map(|s| s.to_string())
            };
        }
    }
    if user.group_licensed && !tags.iter().any(|t| t == tags::GROUP_LICENSED) {
        tags.push(tags::GROUP_LICENSED.to_string());
    }
    let paths = licences
        .iter()
        .map(|sku| {
            if user.group_licensed {
                LicenceAssignment::via_group(sku, LICENCE_GROUP)
            } else {
                LicenceAssignment::direct(sku)
            }
        })
        .collect();
    user.set_licence_paths(paths);
    user.show_licences(&mut view);
    user.cloud = Timeline::new(view);
    user.tags = tags;
    if with_number {
        number_rec.row = Timeline::new(Some(row));
        (user, Some(number_rec))
    } else {
        (user, None)
    }
}

/// Share of Direct Routing users whose number is set in on-premises AD.
const ON_PREM_SHARE: f64 = 0.3;

/// Share of `calling_plans` users left in Islands mode.
const NOT_TEAMS_ONLY_SHARE: f64 = 0.04;

/// The port-out order of user `i`'s Calling Plan number, created with the
/// tenant. The last 24 h before the FOC date are `TransferPending`, or the
/// last quarter of the order when it is shorter than 4 days (demo timings).
fn port_order(config: &SimConfig, meta: &Meta, i: u32) -> PortOrder {
    let k = Key::new(meta.seed).str("port").int(u64::from(i));
    let f = &config.port.foc_after;
    let total = k.between(f.min, f.max.max(f.min));
    let window = Duration::from_secs(24 * 3600).min(total / 4);
    let before = total - window;
    let created = meta.created_at;
    let contacting_at = created.plus(before.mul_f64(0.1 + 0.1 * k.int(1).unit()));
    let approved_at = created.plus(before.mul_f64(0.4 + 0.3 * k.int(2).unit()));
    let error = (k.int(3).unit() < config.port.error_rate).then(|| {
        let span = approved_at.since(contacting_at);
        let at = contacting_at.plus(span.mul_f64(k.int(4).unit()));
        let m = (k.int(5).bits() % PORT_ERRORS.len() as u64) as usize;
        (
            at,
            PORT_ERRORS
                .get(m)
                .copied()
                .unwrap_or("Rejected")
                .to_string(),
        )
    });
    PortOrder {
        order_id: format!("PO-{:08X}", k.int(6).bits() >> 32),
        created_at: created,
        contacting_at,
        approved_at,
        pending_at: created.plus(before),
        foc_at: created.plus(total),
        error,
    }
}
