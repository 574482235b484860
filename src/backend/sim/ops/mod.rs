//! The effects of actions on one user and (optionally) one number record, by
//! operation family.

mod conferencing;
mod licences;
mod locations;
mod numbers;
mod onprem;

use crate::backend::sim::db::*;
use crate::backend::sim::model::{ActiveMove, NumberRecord, StoredOutage, UserRecord};
use crate::backend::sim::tenant::*;
use crate::backend::{BackendError, ErrorKind, Homing};
use crate::clock::Timestamp;

/// An action's work on one user and (optionally) one number record.
pub(in crate::backend::sim) struct Effects<'a> {
    pub(in crate::backend::sim) shared: &'a Shared,
    pub(in crate::backend::sim) now: Timestamp,
    pub(in crate::backend::sim) user: UserRecord,
    pub(in crate::backend::sim) number: Option<(String, Option<NumberRecord>)>,
    pub(in crate::backend::sim) user_dirty: bool,
    pub(in crate::backend::sim) number_dirty: bool,
    /// Moves in progress (loaded for `move_user` only); written back when set.
    pub(in crate::backend::sim) moves: Option<Vec<ActiveMove>>,
    /// Messages sent by the action.
    pub(in crate::backend::sim) mails: Vec<Mail>,
}

impl Effects<'_> {
    pub(in crate::backend::sim) fn upn(&self) -> String {
        self.user.cloud.truth().upn.clone()
    }

    pub(in crate::backend::sim) fn not_in_tenant(&self, number: &str) -> BackendError {
        BackendError::new(
            ErrorKind::NotFound,
            format!(
                "Telephone Number '{number}' is not found from tenant '{}'",
                self.shared.meta.tenant_id
            ),
        )
    }

    /// Latency of the next change of this user, consuming a sequence number.
    pub(in crate::backend::sim) fn next_visible(&mut self, what: &str) -> Timestamp {
        let upn = self.upn();
        let d = self.shared.latency(&upn, what, self.user.seq);
        self.user.seq += 1;
        self.now.plus(d)
    }

    pub(in crate::backend::sim) fn start_outage(&mut self, number: &str) {
        let now = self.now;
        if let Some(o) = self.user.outages.last_mut() {
            // Still out, or its end (a restore not yet in service) is undone.
            if o.end.is_none_or(|e| e > now) {
                o.end = None;
                return;
            }
        }
        self.user.outages.push(StoredOutage {
            number: number.to_string(),
            start: self.now,
            end: None,
        });
    }

    /// The next directory sync tick after now.
    pub(in crate::backend::sim) fn next_tick(&self) -> Timestamp {
        let interval = (self.shared.config.dirsync_interval.as_millis() as i64).max(1);
        Timestamp((self.now.0.div_euclid(interval) + 1) * interval)
    }

    pub(in crate::backend::sim) fn has(&self, sku: &str) -> bool {
        self.user.licences.iter().any(|l| l == sku)
    }

    /// Commit a change of the cloud user object, visible after a latency draw.
    pub(in crate::backend::sim) fn set_user(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut crate::backend::UserView),
    ) {
        let visible_at = self.next_visible(what);
        let mut s = self.user.cloud.truth().clone();
        f(&mut s);
        self.user.cloud.push(self.now, visible_at, s);
        self.user_dirty = true;
    }
}

impl Effects<'_> {
    pub(in crate::backend::sim) fn require_online(&self) -> Result<(), BackendError> {
        if self.user.cloud.truth().homed == Homing::Online {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' is homed on-premises; move the user to Teams first (Move-CsUser)",
                    self.upn()
                ),
            ))
        }
    }
}

impl Effects<'_> {
    pub(in crate::backend::sim) fn into_writes(self) -> Writes {
        let mut w = Writes::new();
        if let Some(m) = &self.moves {
            w.push((MOVES_KEY.as_bytes().to_vec(), to_bytes(m)));
        }
        if self.user_dirty {
            let key = user_key(&self.user.cloud.truth().upn);
            w.push((key.into_bytes(), to_bytes(&self.user)));
        }
        if self.number_dirty {
            if let Some((n, Some(rec))) = &self.number {
                w.push((number_key(n).into_bytes(), to_bytes(rec)));
            }
        }
        w
    }
}

/// A number whose country the simulator cannot tell (see `seed::country_of`).
pub(in crate::backend::sim) fn unknown_country(number: &str) -> BackendError {
    BackendError::new(
        ErrorKind::Precondition,
        format!(
            "simulated tenant: cannot tell the country of telephone number '{number}' \
             (known: +1 US/CA, +44 GB, +353 IE, +33 FR, +49 DE, +31 NL, +61 AU)"
        ),
    )
}

pub(in crate::backend::sim) fn user_not_found(upn: &str) -> BackendError {
    BackendError::new(
        ErrorKind::NotFound,
        format!("Management object not found for identity '{upn}'"),
    )
}
