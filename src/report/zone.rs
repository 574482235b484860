//! The time zone human output is shown in: the operator's (`--tz`, `TZ`, the
//! system's), or UTC with `--utc`. Machine output (JSON, CSV) stays UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::Timestamp;

/// A display time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Zone {
    /// Coordinated Universal Time.
    #[default]
    Utc,
    /// A named IANA zone (`Europe/Berlin`).
    Named(Tz),
}

/// A zone name that is not in the IANA database.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown time zone `{0}`: give an IANA name such as Europe/Berlin or America/New_York, or UTC"
)]
pub struct UnknownZone(pub String);

impl FromStr for Zone {
    type Err = UnknownZone;

    fn from_str(s: &str) -> Result<Zone, UnknownZone> {
        let name = s.trim().trim_start_matches(':');
        if name.eq_ignore_ascii_case("utc") || name.eq_ignore_ascii_case("z") {
            return Ok(Zone::Utc);
        }
        name.parse::<Tz>()
            .map(Zone::Named)
            .map_err(|_| UnknownZone(s.to_string()))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

impl Zone {
    /// The operator's zone: the environment's `TZ`, else the system's
    /// (`/etc/localtime`), else UTC. A name that is not an IANA one is ignored.
    pub fn local() -> Zone {
        let from_env = std::env::var("TZ").ok().and_then(|t| t.parse().ok());
        from_env.or_else(system_zone).unwrap_or(Zone::Utc)
    }

    /// The zone as chrono-tz names it (`UTC` for [`Zone::Utc`]).
    pub fn tz(&self) -> Tz {
        match self {
            Zone::Utc => Tz::UTC,
            Zone::Named(tz) => *tz,
        }
    }

    /// `2026-12-01 23:10:00 CET`: the instant in this zone, to the second.
    pub fn format(&self, t: Timestamp) -> String {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(t.millis()) else {
            return t.rfc3339();
        };
        match self {
            Zone::Utc => utc.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            Zone::Named(tz) => utc
                .with_timezone(tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
        }
    }

    /// `23:10 CET`: the time of day only, for lines about today.
    pub fn format_short(&self, t: Timestamp) -> String {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(t.millis()) else {
            return t.rfc3339();
        };
        match self {
            Zone::Utc => utc.format("%H:%M UTC").to_string(),
            Zone::Named(tz) => utc.with_timezone(tz).format("%H:%M %Z").to_string(),
        }
    }
}

/// `t` in `zone`, RFC 3339 with the zone's offset at that instant
/// (`2026-11-23T23:15:00.000+01:00`), as reports write it.
pub fn local_rfc3339(t: Timestamp, zone: Tz) -> String {
    match DateTime::from_timestamp_millis(t.0) {
        Some(dt) => dt
            .with_timezone(&zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        None => t.rfc3339(),
    }
}

/// An IANA time zone by name (`Europe/Berlin`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, UnknownZone> {
    Ok(name.parse::<Zone>()?.tz())
}

/// The zone `/etc/localtime` links to (`…/zoneinfo/Europe/Berlin`).
fn system_zone() -> Option<Zone> {
    let target = std::fs::read_link("/etc/localtime").ok()?;
    let s = target.to_str()?;
    let (_, name) = s.split_once("zoneinfo/")?;
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_say_what_to_give() {
        assert_eq!("UTC".parse(), Ok(Zone::Utc));
        assert_eq!(
            ":Europe/Berlin".parse(),
            Ok(Zone::Named(Tz::Europe__Berlin))
        );
        let e = "Mars/Olympus".parse::<Zone>().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("`Mars/Olympus`") && e.contains("IANA")));
        assert!("nowhere".parse::<Zone>().is_err());
    }

    #[test]
    fn instants_are_shown_in_the_zone() {
        // 2026-12-01T22:10:00Z is 23:10 in Berlin (CET, +01:00).
        let t = Timestamp(1_796_163_000_000);
        assert_eq!(Zone::Utc.format(t), "2026-12-01 22:10:00 UTC");
        let berlin = Zone::Named(Tz::Europe__Berlin);
        assert_eq!(berlin.format(t), "2026-12-01 23:10:00 CET");
        assert_eq!(berlin.format_short(t), "23:10 CET");
        assert_eq!(berlin.to_string(), "Europe/Berlin");
    }

    #[test]
    fn instants_show_in_the_zone_with_its_offset_of_the_day() {
        let winter = Timestamp::parse_rfc3339("2026-11-23T22:15:00Z").unwrap_or_default();
        let summer = Timestamp::parse_rfc3339("2026-07-01T22:15:00Z").unwrap_or_default();
        let berlin = parse_zone("Europe/Berlin").unwrap_or(Tz::UTC);
        assert_eq!(
            local_rfc3339(winter, berlin),
            "2026-11-23T23:15:00.000+01:00"
        );
        assert_eq!(
            local_rfc3339(summer, berlin),
            "2026-07-02T00:15:00.000+02:00"
        );
        assert_eq!(
            local_rfc3339(winter, Tz::UTC),
            "2026-11-23T22:15:00.000+00:00"
        );
        assert!(parse_zone("Mars/Olympus").is_err());
    }
}
