//! Emergency locations of numbers.

use serde_json::json;

use crate::backend::sim::db::*;
use crate::backend::sim::model::NumberRecord;
use crate::backend::sim::seed::location;
use crate::backend::sim::tenant::*;
use crate::backend::{AddressMode, BackendError, ErrorKind};
use crate::clock::Timestamp;

impl Shared {
    /// `Set-CsPhoneNumberAssignment -TelephoneNumber -LocationId`.
    pub(in crate::backend::sim) fn set_number_location(
        &self,
        number: &str,
        location_id: &str,
        now: Timestamp,
    ) -> Result<Result<Acted, BackendError>, SimError> {
        let not_found = || {
            BackendError::new(
                ErrorKind::NotFound,
                format!(
                    "Telephone Number '{number}' is not found from tenant '{}'",
                    self.meta.tenant_id
                ),
            )
        };
        let Some(mut rec) = self.db.load::<NumberRecord>(&number_key(number))? else {
            return Ok(Err(not_found()));
        };
        self.advance_number(&mut rec, now);
        let Some(row) = rec.row.truth().clone() else {
            return Ok(Err(not_found()));
        };
        // A locked address refuses any change, valid location or not.
        if row.mode() == AddressMode::OperatorLocked {
            return Ok(Err(BackendError::new(
                ErrorKind::Precondition,
                OPERATOR_LOCKED_MESSAGE,
            )));
        }
        if let Err(e) = self.check_location(location_id, &row.iso_country_code, number) {
            return Ok(Err(e));
        }
        if row.location_id.as_deref() == Some(location_id) {
            return Ok(Ok((json!({}), Vec::new(), Vec::new())));
        }
        let d = self.latency(&rec.telephone_number, "set_number_location", rec.seq);
        rec.seq += 1;
        let mut pending = row;
        pending.location_id = Some(location_id.to_string());
        pending.activation_state = "UpdatePending".into();
        let mut done = pending.clone();
        done.activation_state = "Activated".into();
        rec.row.push(now, now, Some(pending));
        rec.row.push(now, now.plus(d), Some(done));
        let w = vec![(number_key(number).into_bytes(), to_bytes(&rec))];
        Ok(Ok((json!({}), w, Vec::new())))
    }

    /// A location may be given to a number of `country`: it exists, its civic
    /// address is validated and in the same country.
    pub(in crate::backend::sim) fn check_location(
        &self,
        id: &str,
        country: &str,
        number: &str,
    ) -> Result<(), BackendError> {
        let Some(loc) = location(id) else {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "Location '{id}' is not found from tenant '{}'",
                    self.meta.tenant_id
                ),
            ));
        };
        if loc.validation_status != "Validated" {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "The emergency address must be validated before it can be assigned \
                     (location '{id}' is {})",
                    loc.validation_status
                ),
            ));
        }
        if loc.country != country {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "The country of location '{id}' ({}) does not match the country of \
                     telephone number '{number}' ({country})",
                    loc.country
                ),
            ));
        }
        Ok(())
    }
}
