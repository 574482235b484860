//! Porting windows: a cron start time plus a duration.

use std::time::Duration;

use super::{CronSchedule, ScheduleError};
use crate::clock::Timestamp;

/// A recurring porting window: it opens at each fire time of `start` and stays
/// open for `duration` of **elapsed** time.
///
/// Because the duration is elapsed time, a window that spans a DST change closes
/// at a different local time than on other days: `0 1 * * *` + `4h` in
/// `Europe/Berlin` closes at 06:00 local on 2026-03-29 (spring forward) and at
/// 04:00 local on 2026-10-25 (fall back), after exactly 4 hours each time.
/// Windows may span midnight (`0 22 * * FRI` + `8h` is open until Saturday 06:00).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// When the window opens.
    pub start: CronSchedule,
    /// How long it stays open after each opening.
    pub duration: Duration,
}

impl Window {
    /// Parse a window from a cron expression, a humantime duration (`4h`,
    /// `1h30m`, `2 days`) and an IANA time zone. A zero duration is an error.
    pub fn parse(cron: &str, duration: &str, tz: &str) -> Result<Window, ScheduleError> {
        let start = CronSchedule::parse(cron, tz)?;
        let duration = parse_duration("window duration", duration)?;
        Ok(Window { start, duration })
    }

    /// Whether `t` is inside a window: `fire <= t < fire + duration` for the most
    /// recent fire time at or before `t`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.closes_at_if_open(t).is_some()
    }

    /// `t` itself if a window is open at `t`, else when the next window opens.
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.contains(t) {
            Some(t)
        } else {
            self.start.next_after(t)
        }
    }

    /// When the window open at `t` closes, or, if none is open, when the next one
    /// closes.
    pub fn closes_at(&self, t: Timestamp) -> Option<Timestamp> {
        match self.closes_at_if_open(t) {
            Some(close) => Some(close),
            None => self
                .start
                .next_after(t)
                .map(|open| open.plus(self.duration)),
        }
    }

    fn closes_at_if_open(&self, t: Timestamp) -> Option<Timestamp> {
        // Only the latest opening matters: with a fixed duration an earlier
        // opening never closes later, so overlapping windows act as their union.
        let opened = self.start.last_at_or_before(t)?;
        let close = opened.plus(self.duration);
        (t < close).then_some(close)
    }
}

/// Parse a non-zero humantime duration, naming `what` in the error.
pub(crate) fn parse_duration(what: &'static str, text: &str) -> Result<Duration, ScheduleError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| ScheduleError::Duration {
        what,
        text: text.to_string(),
        reason: format!("{e} (write e.g. `4h`, `1h30m`, `2 days`)"),
    })?;
    if d.is_zero() {
        return Err(ScheduleError::Duration {
            what,
            text: text.to_string(),
            reason: "must be longer than zero".to_string(),
        });
    }
    Ok(d)
}
