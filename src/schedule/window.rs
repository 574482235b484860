//! Porting windows: a cron start time plus a duration.

use std::time::Duration;

use super::{CronSchedule, ScheduleError};
use crate::clock::Timestamp;
use crate::spec::limits::{human_duration, MAX_SPAN};

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
    /// `1h30m`, `2 days`) and an IANA time zone. A zero duration, or one
    /// longer than [`MAX_SPAN`], is an error.
    pub fn parse(cron: &str, duration: &str, tz: &str) -> Result<Window, ScheduleError> {
        let start = CronSchedule::parse(cron, tz)?;
        let text = duration;
        let duration = parse_duration("window duration", text)?;
        if duration > MAX_SPAN {
            return Err(ScheduleError::Duration {
                what: "window duration",
                text: text.to_string(),
                reason: format!("must be at most {}", human_duration(MAX_SPAN)),
            });
        }
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

impl crate::engine::machine::WindowCalendar for Window {
    fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        Window::next_open(self, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::ts;

    fn window(cron: &str, duration: &str, tz: &str) -> Window {
        Window::parse(cron, duration, tz).unwrap_or_else(|e| panic!("{cron} {duration}: {e}"))
    }

    #[test]
    fn weeknight_window_spans_midnight() {
        // Friday 2026-11-20 22:00 CET (21:00Z) until Saturday 06:00 CET (05:00Z).
        let w = window("0 22 * * MON-FRI", "8h", "Europe/Berlin");
        assert!(!w.contains(ts("2026-11-20T20:59:59.999Z")));
        assert!(w.contains(ts("2026-11-20T21:00:00Z")));
        assert!(w.contains(ts("2026-11-20T23:30:00Z"))); // 00:30 Saturday local
        assert!(w.contains(ts("2026-11-21T04:59:59.999Z")));
        assert!(!w.contains(ts("2026-11-21T05:00:00Z")));

        let inside = ts("2026-11-21T02:00:00Z");
        assert_eq!(w.next_open(inside), Some(inside));
        assert_eq!(w.closes_at(inside), Some(ts("2026-11-21T05:00:00Z")));
        // Saturday morning: no window until Monday 22:00 local.
        let weekend = ts("2026-11-21T12:00:00Z");
        assert_eq!(w.next_open(weekend), Some(ts("2026-11-23T21:00:00Z")));
        assert_eq!(w.closes_at(weekend), Some(ts("2026-11-24T05:00:00Z")));
    }

    #[test]
    fn window_across_spring_forward_lasts_its_full_duration() {
        // 01:00 CET (00:00Z) + 4h closes at 04:00Z = 06:00 CEST, not 05:00 local.
        let w = window("0 1 * * *", "4h", "Europe/Berlin");
        assert_eq!(
            w.closes_at(ts("2026-03-29T00:30:00Z")),
            Some(ts("2026-03-29T04:00:00Z"))
        );
        assert!(w.contains(ts("2026-03-29T03:59:00Z"))); // 05:59 CEST
        assert!(!w.contains(ts("2026-03-29T04:00:00Z")));
        // The day before, the same window closes at 05:00 CET (04:00Z).
        assert_eq!(
            w.closes_at(ts("2026-03-28T00:30:00Z")),
            Some(ts("2026-03-28T04:00:00Z"))
        );
    }

    #[test]
    fn window_across_fall_back_lasts_its_full_duration() {
        // 01:00 CEST (2026-10-24T23:00Z) + 4h closes at 03:00Z = 04:00 CET.
        let w = window("0 1 * * *", "4h", "Europe/Berlin");
        assert_eq!(
            w.next_open(ts("2026-10-24T22:00:00Z")),
            Some(ts("2026-10-24T23:00:00Z"))
        );
        assert!(w.contains(ts("2026-10-25T01:30:00Z"))); // second 02:30 local
        assert!(w.contains(ts("2026-10-25T02:59:59Z")));
        assert!(!w.contains(ts("2026-10-25T03:00:00Z")));
    }

    #[test]
    fn window_opening_in_the_gap_opens_at_the_gap_end() {
        let w = window("30 2 * * *", "2h", "Europe/Berlin");
        let before = ts("2026-03-29T00:59:00Z"); // 01:59 CET
        assert!(!w.contains(before));
        assert_eq!(w.next_open(before), Some(ts("2026-03-29T01:00:00Z"))); // 03:00 CEST
        assert_eq!(w.closes_at(before), Some(ts("2026-03-29T03:00:00Z")));
        assert!(w.contains(ts("2026-03-29T01:00:00Z")));
    }

    #[test]
    fn saturday_night_window_across_midnight_and_fall_back_in_new_york() {
        // Sat 2026-10-31 22:00 EDT (02:00Z) + 8h → 10:00Z = 05:00 EST on Sunday.
        let w = window("0 22 * * SAT", "8h", "America/New_York");
        assert!(w.contains(ts("2026-11-01T06:30:00Z"))); // second 01:30 local
        assert!(w.contains(ts("2026-11-01T09:59:59Z")));
        assert!(!w.contains(ts("2026-11-01T10:00:00Z")));
        assert_eq!(
            w.next_open(ts("2026-11-01T10:00:00Z")),
            Some(ts("2026-11-08T03:00:00Z"))
        );
    }

    #[test]
    fn window_longer_than_its_period_is_the_union() {
        // Opens every day at 22:00 for 30h: always open once it first opened.
        let w = window("0 22 * * *", "30h", "UTC");
        assert!(w.contains(ts("2026-11-21T12:00:00Z")));
        assert_eq!(
            w.closes_at(ts("2026-11-21T12:00:00Z")),
            Some(ts("2026-11-22T04:00:00Z"))
        );
    }

    #[test]
    fn bad_durations_and_zones_are_rejected() {
        let e = Window::parse("0 22 * * *", "0s", "UTC")
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "window duration `0s`: must be longer than zero"
        );
        let e = Window::parse("0 22 * * *", "4", "UTC")
            .map(|_| ())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("window duration `4`: time unit needed"),
            "{e}"
        );
        let e = Window::parse("0 22 * * *", "4h", "Mars/Olympus")
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e, ScheduleError::UnknownTimezone("Mars/Olympus".into()));
        assert_eq!(
            window("0 22 * * *", "1h30m", "UTC").duration,
            Duration::from_secs(5400)
        );
    }
}
