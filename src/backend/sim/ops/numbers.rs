//! Number assignment, voice routing and the online voice features.

use serde_json::{json, Value};

use crate::backend::sim::model::NumberRecord;
use crate::backend::sim::ops::*;
use crate::backend::sim::seed::country_of;
use crate::backend::sim::tenant::*;
use crate::backend::{AddressMode, BackendError, ErrorKind, Homing, NumberType, NumberView};

impl Effects<'_> {
    pub(in crate::backend::sim) fn remove(
        &mut self,
        number_type: NumberType,
    ) -> Result<Value, BackendError> {
        let Some((number, rec)) = self.number.clone() else {
            return Err(BackendError::new(ErrorKind::Fatal, "no number given"));
        };
        let user_id = self.user.cloud.truth().id.clone();
        let ported = rec
            .as_ref()
            .and_then(|r| r.port.as_ref())
            .is_some_and(|p| p.completed(self.now));
        let row = rec.as_ref().and_then(|r| r.row.truth().clone());
        let row = match row {
            Some(r) if r.number_type == number_type => r,
            other => {
                let held_by_user = other
                    .as_ref()
                    .is_some_and(|r| r.assigned_pstn_target_id.as_deref() == Some(&user_id));
                if self.user.released.contains(&number) && !held_by_user {
                    return Ok(json!({}));
                }
                return Err(self.not_in_tenant(&number));
            }
        };
        match row.assigned_pstn_target_id.as_deref() {
            None => return Ok(json!({})),
            Some(t) if t != user_id => {
                return Err(BackendError::new(
                    ErrorKind::Conflict,
                    format!("Telephone Number '{number}' is assigned to another user"),
                ))
            }
            Some(_) => {}
        }
        if row.number_source == "OnPremises" {
            return Err(BackendError::new(ErrorKind::Precondition, ON_PREM_MESSAGE));
        }
        let visible_at = self.next_visible("remove_number");
        let Some((_, Some(rec))) = self.number.as_mut() else {
            return Err(self.not_in_tenant(&number));
        };
        if row.number_type == NumberType::DirectRouting || ported {
            // An unassigned Direct Routing number leaves the inventory, and so
            // does a Calling Plan number that was ported out.
            rec.row.push(self.now, visible_at, None);
            self.shared.dr_left(rec, self.now);
        } else {
            let mut r = row.clone();
            r.assigned_pstn_target_id = None;
            r.pstn_assignment_status = "Unassigned".into();
            r.activation_state = "Activated".into();
            rec.row.push(self.now, visible_at, Some(r));
        }
        self.number_dirty = true;
        let mut s = self.user.cloud.truth().clone();
        if s.line_uri.as_deref() == Some(number.as_str()) {
            s.line_uri = None;
        }
        s.enterprise_voice_enabled = false;
        self.user.cloud.push(self.now, visible_at, s);
        if !self.user.released.contains(&number) {
            self.user.released.push(number.clone());
        }
        self.start_outage(&number);
        self.user_dirty = true;
        Ok(json!({}))
    }

    pub(in crate::backend::sim) fn grant(
        &mut self,
        policy: Option<String>,
    ) -> Result<Value, BackendError> {
        if self.user.cloud.truth().online_voice_routing_policy == policy {
            return Ok(json!({}));
        }
        let visible_at = self.next_visible("grant_voice_routing_policy");
        let mut s = self.user.cloud.truth().clone();
        s.online_voice_routing_policy = policy;
        self.user.cloud.push(self.now, visible_at, s);
        self.user_dirty = true;
        Ok(json!({}))
    }

    pub(in crate::backend::sim) fn assign(
        &mut self,
        number_type: NumberType,
        location_id: Option<String>,
    ) -> Result<Value, BackendError> {
        let Some((number, rec)) = self.number.clone() else {
            return Err(BackendError::new(ErrorKind::Fatal, "no number given"));
        };
        let truth = self.user.cloud.truth().clone();
        let row = match rec.as_ref().and_then(|r| r.row.truth().clone()) {
            Some(r) if r.number_type == number_type => r,
            // Direct Routing numbers need no upload: assigning one creates its row
            // (how a rollback gives a user their Direct Routing number back).
            None if number_type == NumberType::DirectRouting => {
                let Some(country) = country_of(&number) else {
                    return Err(unknown_country(&number));
                };
                if let Some((_, rec)) = self.number.as_mut() {
                    rec.get_or_insert_with(|| NumberRecord {
                        telephone_number: number.clone(),
                        row: crate::backend::sim::model::Timeline::new(None),
                        operator: None,
                        operator_location: None,
                        upload_scheduled: false,
                        scheduled: Vec::new(),
                        port: None,
                        seq: 0,
                    });
                }
                NumberView {
                    telephone_number: number.clone(),
                    number_type,
                    activation_state: "Activated".into(),
                    pstn_assignment_status: "Unassigned".into(),
                    assigned_pstn_target_id: None,
                    location_id: None,
                    number_source: "Online".into(),
                    pstn_partner_name: None,
                    iso_country_code: country.into(),
                    location_update_supported: true,
                    address_mode: AddressMode::TenantAssigns.as_str().into(),
                }
            }
            _ => return Err(self.not_in_tenant(&number)),
        };
        match row.assigned_pstn_target_id.as_deref() {
            Some(t) if t == truth.id => return Ok(json!({})),
            Some(_) => {
                return Err(BackendError::new(
                    ErrorKind::Conflict,
                    format!(
                        "Telephone Number '{number}' has already been assigned to another user"
                    ),
                ))
            }
            None => {}
        }
        if truth.on_prem_line_uri.is_some() {
            return Err(BackendError::new(ErrorKind::Precondition, ON_PREM_MESSAGE));
        }
        if truth.homed == Homing::OnPremises {
            // UNCERTAIN: wording; the rule is DOMAIN 1.6/1.8 (move first).
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' is homed in Skype for Business Server on-premises and cannot be \
                     assigned an online '{number_type}' number; move the user to Teams first \
                     (Move-CsUser)",
                    truth.upn
                ),
            ));
        }
        if number_type != NumberType::DirectRouting
            && truth.teams_upgrade_effective_mode != "TeamsOnly"
        {
            // UNCERTAIN: wording; the rule is DOMAIN 1.8 and operator-connect-plan.md.
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' must be in TeamsOnly mode to be assigned a '{number_type}' \
                     number (TeamsUpgradeEffectiveMode is '{}'); grant the UpgradeToTeams \
                     policy first",
                    truth.upn, truth.teams_upgrade_effective_mode
                ),
            ));
        }
        let licensed = self.user.licences.iter().any(|l| l == "MCOEV")
            && (number_type != NumberType::CallingPlan
                || self.user.licences.iter().any(|l| l.starts_with("MCOPSTN")));
        if !licensed {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' lacks appropriate licenses to assign a '{number_type}' number",
                    truth.upn
                ),
            ));
        }
        if truth.usage_location != row.iso_country_code {
            // The rule: Learn "Manage phone numbers for users" (same
            // country/region). UNCERTAIN: the service's wording.
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "The usage location of user '{}' ({}) does not match the country of \
                     telephone number '{number}' ({}); they must be the same country/region",
                    truth.upn, truth.usage_location, row.iso_country_code
                ),
            ));
        }
        let location_id = match location_id {
            Some(_) if row.mode() == AddressMode::OperatorLocked => {
                return Err(BackendError::new(
                    ErrorKind::Precondition,
                    OPERATOR_LOCKED_MESSAGE,
                ));
            }
            Some(loc) => {
                self.shared
                    .check_location(&loc, &row.iso_country_code, &number)?;
                Some(loc)
            }
            // Without -LocationId the number keeps the address it has (the
            // operator's, in the operator modes).
            None => row.location_id.clone(),
        };
        if location_id.is_none()
            && number_type == NumberType::OperatorConnect
            && matches!(row.iso_country_code.as_str(), "US" | "CA")
        {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "An emergency LocationId is required to assign Operator Connect number \
                     '{number}' in country '{}'",
                    row.iso_country_code
                ),
            ));
        }
        if let Some(other) = truth.line_uri.as_deref().filter(|l| *l != number) {
            return Err(BackendError::new(
                ErrorKind::Conflict,
                format!(
                    "User '{}' already has telephone number '{other}' assigned; remove it first",
                    truth.upn
                ),
            ));
        }
        let visible_at = self.next_visible("assign_number");
        let Some((_, Some(rec))) = self.number.as_mut() else {
            return Err(self.not_in_tenant(&number));
        };
        let mut pending = row.clone();
        pending.assigned_pstn_target_id = Some(truth.id.clone());
        pending.pstn_assignment_status = "UserAssigned".into();
        pending.location_id = location_id;
        pending.activation_state = "AssignmentPending".into();
        let mut active = pending.clone();
        active.activation_state = "Activated".into();
        rec.row.push(self.now, self.now, Some(pending));
        let activated_at = rec.row.push(self.now, visible_at, Some(active));
        self.number_dirty = true;
        let mut s = truth;
        s.line_uri = Some(number.clone());
        s.enterprise_voice_enabled = true;
        self.user.cloud.push(self.now, visible_at, s);
        if let Some(o) = self.user.outages.last_mut().filter(|o| o.end.is_none()) {
            o.end = Some(activated_at);
        }
        self.user.released.retain(|n| *n != number);
        self.user_dirty = true;
        Ok(json!({}))
    }
}

impl Effects<'_> {
    pub(in crate::backend::sim) fn enable_voice_online(&mut self) -> Result<Value, BackendError> {
        self.require_online()?;
        if !self.has("MCOEV") {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' lacks appropriate licenses to enable Enterprise Voice \
                     (Phone System)",
                    self.upn()
                ),
            ));
        }
        if !self.user.cloud.truth().enterprise_voice_enabled {
            self.set_user("enable_voice_online", |s| s.enterprise_voice_enabled = true);
        }
        Ok(json!({}))
    }

    pub(in crate::backend::sim) fn enable_hosted_voicemail(
        &mut self,
    ) -> Result<Value, BackendError> {
        self.require_online()?;
        if !self.user.cloud.truth().hosted_voicemail {
            self.set_user("enable_hosted_voicemail", |s| s.hosted_voicemail = true);
        }
        Ok(json!({}))
    }
}
