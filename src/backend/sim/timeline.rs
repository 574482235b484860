//! Lazy time: scheduled events and lagging views applied, in time order,
//! whenever a user or number is read or written.

use std::time::Duration;

use crate::backend::sim::config::SimConfig;
use crate::backend::sim::model::{EventKind, NumberRecord, Scheduled, StoredOutage, UserRecord};
use crate::backend::sim::rng::Key;
use crate::backend::sim::seed::{country_of, operator_location, LICENCE_GROUP};
use crate::backend::sim::tenant::*;
use crate::backend::{AddressMode, LicenceAssignment, NumberType, NumberView};
use crate::clock::Timestamp;

impl Shared {
    pub(in crate::backend::sim) fn latency(&self, user: &str, what: &str, seq: u64) -> Duration {
        latency_draw(&self.config, user, what, seq)
    }

    /// Apply the user's due scheduled events, then fold visible changes.
    pub(in crate::backend::sim) fn advance_user(&self, rec: &mut UserRecord, now: Timestamp) {
        rec.scheduled.sort_by_key(|e| e.at);
        while rec.scheduled.first().is_some_and(|e| e.at <= now) {
            let ev = rec.scheduled.remove(0);
            match ev.kind {
                EventKind::UserDirSync => {
                    let mut s = rec.cloud.truth().clone();
                    if let Some(line) = s.on_prem_line_uri.take() {
                        if s.line_uri.as_deref() == Some(line.as_str()) {
                            s.line_uri = None;
                            s.enterprise_voice_enabled = false;
                        }
                        if !rec.released.contains(&line) {
                            rec.released.push(line);
                        }
                        rec.cloud.push(ev.at, ev.visible_at, s);
                    }
                }
                EventKind::UserDirSyncLine { line } => {
                    let mut s = rec.cloud.truth().clone();
                    s.on_prem_line_uri = Some(line.clone());
                    s.line_uri = Some(line);
                    rec.cloud.push(ev.at, ev.visible_at, s);
                }
                EventKind::LicencesArrive { skus } => {
                    // Group-based licensing: each SKU arrives through the group.
                    let mut paths = rec.licence_paths();
                    for sku in skus {
                        let path = LicenceAssignment::via_group(&sku, LICENCE_GROUP);
                        if !paths.contains(&path) {
                            paths.push(path);
                        }
                    }
                    rec.set_licence_paths(paths);
                    let mut s = rec.cloud.truth().clone();
                    rec.show_licences(&mut s);
                    if s.interpreted_user_type == "HybridOnpremSfBUserNeedsProvisioning" {
                        s.interpreted_user_type = "HybridOnpremSfBUser".into();
                    }
                    rec.cloud.push(ev.at, ev.visible_at, s);
                }
                EventKind::PortCompleted { number } => {
                    // Calls now go to the gaining operator: out of service in
                    // Teams until the Operator Connect assignment is active.
                    if rec.outages.last().is_none_or(|o| o.end.is_some()) {
                        rec.outages.push(StoredOutage {
                            number,
                            start: ev.at,
                            end: None,
                        });
                    }
                }
                EventKind::NumberDirSyncRemove
                | EventKind::NumberDirSyncAdd { .. }
                | EventKind::OperatorUpload { .. } => {}
            }
        }
        rec.cloud.compact(now);
        rec.conferencing.compact(now);
    }

    /// Apply the number's due scheduled events, then fold visible changes.
    pub(in crate::backend::sim) fn advance_number(&self, rec: &mut NumberRecord, now: Timestamp) {
        loop {
            rec.scheduled.sort_by_key(|e| e.at);
            if rec.scheduled.first().is_none_or(|e| e.at > now) {
                break;
            }
            let ev = rec.scheduled.remove(0);
            match ev.kind {
                EventKind::NumberDirSyncRemove => {
                    let on_prem = rec
                        .row
                        .truth()
                        .as_ref()
                        .is_some_and(|r| r.number_source == "OnPremises");
                    if on_prem {
                        rec.row.push(ev.at, ev.visible_at, None);
                        self.dr_left(rec, ev.at);
                    }
                }
                EventKind::OperatorUpload {
                    partner,
                    address_mode,
                    location_id,
                } => {
                    if let Some(number) = rec.number_if_absent() {
                        let mode = address_mode.unwrap_or(AddressMode::TenantAssigns);
                        let row = NumberView {
                            iso_country_code: country_of(&number).unwrap_or("US").into(),
                            telephone_number: number,
                            number_type: NumberType::OperatorConnect,
                            activation_state: "Activated".into(),
                            pstn_assignment_status: "Unassigned".into(),
                            assigned_pstn_target_id: None,
                            location_id: location_id.filter(|_| mode.operator_sets_address()),
                            number_source: "Online".into(),
                            pstn_partner_name: Some(partner),
                            location_update_supported: mode != AddressMode::OperatorLocked,
                            address_mode: mode.as_str().into(),
                        };
                        rec.row.push(ev.at, ev.visible_at, Some(row));
                    } else {
                        // Still in the tenant: the upload fails; re-armed when it leaves.
                        rec.upload_scheduled = false;
                    }
                }
                EventKind::NumberDirSyncAdd { target_id } => {
                    if rec.row.truth().is_none() {
                        let row = NumberView {
                            telephone_number: rec.telephone_number.clone(),
                            number_type: NumberType::DirectRouting,
                            activation_state: "Activated".into(),
                            pstn_assignment_status: "UserAssigned".into(),
                            assigned_pstn_target_id: Some(target_id),
                            location_id: None,
                            number_source: "OnPremises".into(),
                            pstn_partner_name: None,
                            iso_country_code: country_of(&rec.telephone_number)
                                .unwrap_or("US")
                                .into(),
                            location_update_supported: true,
                            address_mode: AddressMode::TenantAssigns.as_str().into(),
                        };
                        rec.row.push(ev.at, ev.visible_at, Some(row));
                    }
                }
                EventKind::PortCompleted { .. } => {
                    // A ported-out number nobody holds leaves the inventory.
                    let unassigned = rec
                        .row
                        .truth()
                        .as_ref()
                        .is_some_and(|r| r.assigned_pstn_target_id.is_none());
                    if unassigned {
                        rec.row.push(ev.at, ev.visible_at, None);
                        self.dr_left(rec, ev.at);
                    }
                }
                EventKind::UserDirSync
                | EventKind::UserDirSyncLine { .. }
                | EventKind::LicencesArrive { .. } => {}
            }
        }
        rec.row.compact(now);
    }

    /// The Direct Routing representation of the number leaves (or left) the
    /// tenant at `at`: schedule the operator's upload, once. The instant is
    /// stored with the record, so a restart (even with other knobs) keeps it.
    ///
    /// The address mode and the location the operator sets are drawn here
    /// too (per number, from the seed and the `operator` knobs) and stored
    /// with the event.
    pub(in crate::backend::sim) fn dr_left(&self, rec: &mut NumberRecord, at: Timestamp) {
        if rec.operator.is_none() || rec.upload_scheduled {
            return;
        }
        let operator = &self.config.operator;
        let key = Key::new(self.config.seed);
        let d = &self.config.operator_upload_delay;
        let delay = key
            .str("upload")
            .str(&rec.telephone_number)
            .between(d.min, d.max);
        let mut mode = operator
            .shares(self.meta.profile)
            .pick(key.str("address-mode").str(&rec.telephone_number).unit());
        let location_id = if mode.operator_sets_address() {
            let country = country_of(&rec.telephone_number).unwrap_or("US");
            operator_location(country, rec.operator_location.as_deref())
        } else {
            None
        };
        if location_id.is_none() {
            // No validated address in the number's country to reference.
            mode = AddressMode::TenantAssigns;
        }
        let when = at.plus(delay);
        rec.scheduled.push(Scheduled {
            at: when,
            visible_at: when,
            kind: EventKind::OperatorUpload {
                partner: operator.name.clone(),
                address_mode: Some(mode),
                location_id,
            },
        });
        rec.upload_scheduled = true;
    }
}

impl NumberRecord {
    /// The E.164 of this record if the tenant does not hold it now.
    fn number_if_absent(&self) -> Option<String> {
        match self.row.truth() {
            Some(_) => None,
            None => Some(self.telephone_number.clone()),
        }
    }
}

/// Latency draw for change `seq` of `user` made by `what`.
pub(crate) fn latency_draw(config: &SimConfig, user: &str, what: &str, seq: u64) -> Duration {
    let l = &config.latency;
    let k = Key::new(config.seed)
        .str("latency")
        .str(user)
        .str(what)
        .int(seq);
    let typical_max = l.typical_max.max(l.min);
    if k.unit2() < l.tail_rate {
        let lo = typical_max + Duration::from_millis(1);
        k.between(lo, l.tail_max.max(lo))
    } else {
        let u = k.unit();
        let span = (typical_max - l.min).as_secs_f64();
        l.min + Duration::from_secs_f64(span * u * u)
    }
}
