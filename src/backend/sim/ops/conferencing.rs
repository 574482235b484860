//! Audio conferencing: information e-mails and conference id resets.

use serde_json::{json, Value};

use crate::backend::sim::ops::*;
use crate::backend::sim::rng::Key;
use crate::backend::sim::seed::conference_id;
use crate::backend::{BackendError, ErrorKind};

impl Effects<'_> {
    /// The user's audio conferencing, when Microsoft is the provider.
    pub(in crate::backend::sim) fn microsoft_conferencing(
        &self,
    ) -> Result<crate::backend::ConferencingView, BackendError> {
        match self.user.conferencing.truth() {
            None => Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' is not enabled for audio conferencing",
                    self.upn()
                ),
            )),
            Some(c) if c.provider != "Microsoft" => Err(BackendError::new(
                ErrorKind::Precondition,
                "The user's audio conferencing provider is not Microsoft",
            )),
            Some(c) => Ok(c.clone()),
        }
    }

    pub(in crate::backend::sim) fn send_conferencing_info(
        &mut self,
    ) -> Result<Value, BackendError> {
        let c = self.microsoft_conferencing()?;
        self.mails
            .push((self.upn(), "conferencing_info".into(), c.conference_id));
        Ok(json!({}))
    }

    pub(in crate::backend::sim) fn reset_conference_id(&mut self) -> Result<Value, BackendError> {
        let mut c = self.microsoft_conferencing()?;
        let upn = self.upn();
        if let Some(old) = c.conference_id.take() {
            if !self.user.retired_conference_ids.contains(&old) {
                self.user.retired_conference_ids.push(old);
            }
        }
        let key = Key::new(self.shared.config.seed)
            .str("conf-reset")
            .str(&upn)
            .int(self.user.conference_resets);
        let id = (0u64..)
            .map(|attempt| conference_id(key.int(attempt)))
            .find(|id| !self.user.retired_conference_ids.contains(id))
            .unwrap_or_default();
        self.user.conference_resets += 1;
        let visible_at = self.next_visible("reset_conference_id");
        c.conference_id = Some(id.clone());
        self.user.conferencing.push(self.now, visible_at, Some(c));
        self.user_dirty = true;
        self.mails
            .push((upn, "conference_id_reset".into(), Some(id)));
        Ok(json!({}))
    }
}
