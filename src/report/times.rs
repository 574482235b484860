//! Instants as reports show them: UTC (RFC 3339) and in a display time zone.

use chrono_tz::Tz;

use crate::clock::Timestamp;

/// `t` in `zone`, RFC 3339 with the zone's offset at that instant
/// (`2026-11-23T23:15:00.000+01:00`).
pub fn local_rfc3339(t: Timestamp, zone: Tz) -> String {
    match chrono::DateTime::from_timestamp_millis(t.0) {
        Some(dt) => dt
            .with_timezone(&zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        None => t.rfc3339(),
    }
}

/// An IANA time zone by name (`Europe/Berlin`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}: write an IANA name such as Europe/Berlin or UTC")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
