//! Skype for Business Server: line URIs, Enterprise Voice, moves to Teams.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::sim::model::{ActiveMove, EventKind, NumberRecord, Scheduled};
use crate::backend::sim::ops::*;
use crate::backend::sim::rng::Key;
use crate::backend::sim::seed::country_of;
use crate::backend::{BackendError, ErrorKind, Homing, NumberType};

impl Effects<'_> {
    pub(in crate::backend::sim) fn clear_onprem(&mut self) -> Result<Value, BackendError> {
        let Some(line) = self.user.ad_line.take() else {
            return Ok(json!({}));
        };
        if let Some(op) = self.user.onprem.as_mut() {
            op.line_uri = None;
        }
        let tick = self.next_tick();
        let visible_at = tick.plus(self.shared.latency(&self.upn(), "dirsync", self.user.seq));
        self.user.seq += 1;
        self.user.scheduled.push(Scheduled {
            at: tick,
            visible_at,
            kind: EventKind::UserDirSync,
        });
        self.start_outage(&line);
        self.user_dirty = true;
        if let Some((_, Some(rec))) = self.number.as_mut() {
            rec.scheduled.push(Scheduled {
                at: tick,
                visible_at,
                kind: EventKind::NumberDirSyncRemove,
            });
            self.shared.dr_left(rec, tick);
            self.number_dirty = true;
        }
        Ok(json!({}))
    }
}

impl Effects<'_> {
    pub(in crate::backend::sim) fn enable_onprem_voice(&mut self) -> Result<Value, BackendError> {
        let upn = self.upn();
        // Users homed online but with their number set in on-premises AD (hybrid
        // Direct Routing) have no server object; their AD line is still settable.
        let op = self.user.onprem.clone();
        if op.is_none() && !self.user.cloud.truth().dir_synced {
            return Err(user_not_found(&upn));
        }
        let Some((number, _)) = self.number.clone() else {
            return Err(BackendError::new(ErrorKind::Fatal, "no number given"));
        };
        if country_of(&number).is_none() {
            return Err(unknown_country(&number));
        }
        let done = match &op {
            Some(o) => o.enterprise_voice_enabled && o.line_uri.as_deref() == Some(number.as_str()),
            None => self.user.ad_line.as_deref() == Some(number.as_str()),
        };
        if done {
            return Ok(json!({}));
        }
        if let Some(mut op) = op {
            op.enterprise_voice_enabled = true;
            op.line_uri = Some(number.clone());
            self.user.onprem = Some(op);
        }
        self.user.ad_line = Some(number.clone());
        let tick = self.next_tick();
        let visible_at = tick.plus(self.shared.latency(&upn, "dirsync", self.user.seq));
        self.user.seq += 1;
        self.user.scheduled.push(Scheduled {
            at: tick,
            visible_at,
            kind: EventKind::UserDirSyncLine {
                line: number.clone(),
            },
        });
        self.user_dirty = true;
        let target_id = self.user.cloud.truth().id.clone();
        if let Some((_, rec)) = self.number.as_mut() {
            let rec = rec.get_or_insert_with(|| NumberRecord {
                telephone_number: number.clone(),
                row: crate::backend::sim::model::Timeline::new(None),
                operator: None,
                operator_location: None,
                upload_scheduled: false,
                scheduled: Vec::new(),
                port: None,
                seq: 0,
            });
            rec.scheduled.push(Scheduled {
                at: tick,
                visible_at,
                kind: EventKind::NumberDirSyncAdd {
                    target_id: target_id.clone(),
                },
            });
            self.number_dirty = true;
            // A rollback: the line is back in service once the sync brings
            // the Direct Routing row back (not if the operator uploaded the
            // number meanwhile). Replay the record to the tick to know.
            let mut probe = rec.clone();
            self.shared.advance_number(&mut probe, tick);
            let restored = probe.row.truth().as_ref().is_some_and(|r| {
                r.number_type == NumberType::DirectRouting
                    && r.assigned_pstn_target_id.as_deref() == Some(target_id.as_str())
            });
            if restored {
                if let Some(o) = self.user.outages.last_mut().filter(|o| o.end.is_none()) {
                    o.end = Some(visible_at);
                }
            }
        }
        Ok(json!({}))
    }

    pub(in crate::backend::sim) fn move_user(
        &mut self,
        force: bool,
    ) -> Result<Value, BackendError> {
        let upn = self.upn();
        if self.user.moved_at.is_some() {
            // A re-issue of a move this tenant already made.
            return Ok(json!({}));
        }
        let Some(mut op) = self.user.onprem.clone() else {
            return Err(user_not_found(&upn));
        };
        if op.homed == Homing::Online {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                "User is already homed online",
            ));
        }
        if !(self.has("Teams") && self.has("MCOProfessional")) {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{upn}' is not licensed for Teams and Skype for Business Online \
                     (Plan 2); assign both licences and let them provision before moving"
                ),
            ));
        }
        if op.enterprise_voice_enabled && !self.has("MCOEV") {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{upn}' is enabled for Enterprise Voice on-premises but is not \
                     licensed for Phone System online; assign the licence or use \
                     -BypassEnterpriseVoiceCheck"
                ),
            ));
        }
        let cap = self.shared.config.max_concurrent_moves as usize;
        let now = self.now;
        let Some(moves) = self.moves.as_mut() else {
            return Err(BackendError::new(ErrorKind::Fatal, "moves not loaded"));
        };
        if moves.len() >= cap {
            return Err(BackendError::new(
                ErrorKind::Transient,
                "The maximum number of concurrent user moves has been reached. \
                 Please try again later",
            ));
        }
        let took = Key::new(self.shared.config.seed)
            .str("move")
            .str(&upn)
            .between(Duration::from_secs(60), Duration::from_secs(300));
        moves.push(ActiveMove {
            user: upn,
            until: now.plus(took),
        });
        op.homed = Homing::Online;
        self.user.onprem = Some(op);
        self.user.moved_at = Some(now);
        self.user.contacts_lost = force;
        let visible_at = self.next_visible("move_user");
        let mut provisioning = self.user.cloud.truth().clone();
        provisioning.homed = Homing::Online;
        provisioning.hosting_provider = "sipfed.online.lync.com".into();
        provisioning.interpreted_user_type = "HybridOnlineSfBUserNeedsProvisioning".into();
        provisioning.account_type = "User".into();
        let mut done = provisioning.clone();
        done.interpreted_user_type = "HybridOnlineTeamsOnlyUser".into();
        done.teams_upgrade_effective_mode = "TeamsOnly".into();
        self.user.cloud.push(now, now, provisioning);
        self.user.cloud.push(now, visible_at, done);
        self.user_dirty = true;
        Ok(json!({}))
    }
}
