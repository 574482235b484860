//! Licence removal (Graph `assignLicense`).

use serde_json::{json, Value};

use crate::backend::sim::ops::*;
use crate::backend::{BackendError, ErrorKind, NumberType};

impl Effects<'_> {
    pub(in crate::backend::sim) fn remove_licence(
        &mut self,
        sku: &str,
    ) -> Result<Value, BackendError> {
        if !self.has(sku) {
            return Ok(json!({}));
        }
        let paths = self.user.licence_paths();
        let direct = paths.iter().any(|p| p.sku == sku && !p.is_group());
        let inherited = paths.iter().any(|p| p.sku == sku && p.is_group());
        if !direct {
            // Only a group path: the licence cannot be removed per user.
            return Err(BackendError::new(
                ErrorKind::Precondition,
                "User license is inherited from a group membership and it cannot be removed \
                 directly from the user.",
            ));
        }
        let now = self.now;
        let truth = self.user.cloud.truth().clone();
        let visible_at = self.next_visible("remove_licence");
        self.user.set_licence_paths(
            paths
                .into_iter()
                .filter(|p| p.sku != sku || p.is_group())
                .collect(),
        );
        if inherited {
            // The group still grants the SKU: only the direct path goes.
            let mut s = truth;
            self.user.show_licences(&mut s);
            self.user.cloud.push(now, visible_at, s);
            self.user_dirty = true;
            return Ok(json!({}));
        }
        let calling_plan = sku.starts_with("MCOPSTN");
        let phone_system = sku == "MCOEV";
        let mut lost = None;
        if calling_plan || phone_system {
            if let Some((number, Some(rec))) = self.number.as_mut() {
                if let Some(row) = rec.row.truth().clone() {
                    let holds = row.assigned_pstn_target_id.as_deref() == Some(truth.id.as_str());
                    let needs = match row.number_type {
                        NumberType::CallingPlan => calling_plan || phone_system,
                        NumberType::OperatorConnect | NumberType::DirectRouting => phone_system,
                    };
                    if holds && needs {
                        let ported = rec.port.as_ref().is_some_and(|p| p.completed(now));
                        if row.number_type == NumberType::DirectRouting || ported {
                            // Phone System removal deletes a DR number from the
                            // number database; a ported-out CP number leaves too.
                            rec.row.push(now, visible_at, None);
                            self.shared.dr_left(rec, now);
                        } else {
                            let mut r = row;
                            r.assigned_pstn_target_id = None;
                            r.pstn_assignment_status = "Unassigned".into();
                            r.activation_state = "Activated".into();
                            rec.row.push(now, visible_at, Some(r));
                        }
                        lost = Some(number.clone());
                    }
                }
            }
        }
        let mut s = truth;
        self.user.show_licences(&mut s);
        if let Some(number) = &lost {
            if s.line_uri.as_deref() == Some(number.as_str()) {
                s.line_uri = None;
            }
            s.enterprise_voice_enabled = false;
        }
        self.user.cloud.push(now, visible_at, s);
        self.user_dirty = true;
        if let Some(number) = lost {
            self.number_dirty = true;
            if !self.user.released.contains(&number) {
                self.user.released.push(number.clone());
            }
            self.start_outage(&number);
        }
        Ok(json!({}))
    }
}
