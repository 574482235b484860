//! Standard 5-field crontab in an IANA time zone, evaluated by `croner`.
//!
//! We validate and normalise each field ourselves before croner sees it, because
//! croner accepts more than crontab (seconds, years, `L`/`W`/`#`) and replaces
//! day and month names anywhere in the string (`0 0 * MON *` would be January).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use super::ScheduleError;
use crate::clock::Timestamp;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One crontab field's rules.
struct FieldDef {
    index: usize,
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min..`, with the word used in "unknown … name".
    names: Option<(&'static [&'static str], &'static str)>,
}

const FIELDS: [FieldDef; 5] = [
    FieldDef {
        index: 1,
        name: "minute",
        min: 0,
        max: 59,
        names: None,
    },
    FieldDef {
        index: 2,
        name: "hour",
        min: 0,
        max: 23,
        names: None,
    },
    FieldDef {
        index: 3,
        name: "day of month",
        min: 1,
        max: 31,
        names: None,
    },
    FieldDef {
        index: 4,
        name: "month",
        min: 1,
        max: 12,
        names: Some((&MONTHS, "month")),
    },
    // 7 is Sunday as well as 0, as in every crontab.
    FieldDef {
        index: 5,
        name: "day of week",
        min: 0,
        max: 7,
        names: Some((&DAYS, "day")),
    },
];

/// A field after validation: numbers only, plus the values it selects.
struct ParsedField {
    normalized: String,
    /// Bit `v` set when value `v` is selected.
    values: u64,
    starts_with_star: bool,
}

/// A standard 5-field crontab schedule (`minute hour day-of-month month day-of-week`)
/// evaluated in an IANA time zone.
///
/// Accepted: numbers, `*`, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month
/// names `JAN`–`DEC`, day names `SUN`–`SAT` (any case), 0 and 7 both Sunday, and the
/// nicknames `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`/`@annually`.
/// Not accepted: seconds or year fields, croner's `L`, `W`, `#`, `?` extensions.
///
/// **Day of month and day of week** follow Vixie cron: when both are restricted a day
/// matches if *either* matches (`0 0 13 * FRI` is every 13th and every Friday); when
/// either field starts with `*` (e.g. `*/2`) both must match.
///
/// **Daylight saving time.** Times are local wall-clock times in the schedule's zone.
/// As in Vixie cron, the rule depends on whether the minute or hour field starts with `*`:
/// - *Fixed times* (neither starts with `*`: `30 2 * * *`, `30 2,14 * * *`, `0 1-3 * * *`)
///   - spring forward (the local time does not exist): fires **once, at the first
///     instant after the gap** — 03:00 local. `30 2 * * *` in `Europe/Berlin` fires at
///     `2026-03-29T01:00:00Z`; in `America/New_York` at `2026-03-08T07:00:00Z`. Several
///     times inside one gap collapse into that one fire.
///   - fall back (the local time happens twice): fires **once, at the first
///     occurrence** (the summer-time offset) — `30 2 * * *` in Berlin fires at
///     `2026-10-25T00:30:00Z` (02:30 CEST), not again at 01:30Z (02:30 CET).
///     New York repeats 01:00–02:00 instead, so there `30 1 * * *` fires at
///     `2026-11-01T05:30:00Z` (01:30 EDT) only.
/// - *Intervals* (minute or hour starts with `*`: `*/15 2-4 * * *`, `0 * * * *`):
///   elapsed time rules, as croner does it — times in the gap are skipped (they
///   never happened), and repeated times fire on both occurrences (an hour of real
///   time passed between them).
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    tz: Tz,
    cron: Cron,
    /// Minute and hour both name fixed values (neither starts with `*`).
    wall_clock: bool,
}

/// Bound on occurrences inspected per search (a 2-hour fold holds at most 120
/// of a fixed-minute schedule's occurrences).
const MAX_STEPS: usize = 10_000;

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expr", &self.expr)
            .field("tz", &self.tz.name())
            .finish()
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl CronSchedule {
    /// Parse a 5-field crontab expression in the IANA time zone `tz`
    /// (`Europe/Berlin`, `America/New_York`, `UTC`).
    ///
    /// Errors name the field, its column and what is wrong, e.g.
    /// ``field 5 (day of week) `FOO` at column 11: unknown day name``; an unknown
    /// time zone is [`ScheduleError::UnknownTimezone`]; a seconds form is
    /// [`ScheduleError::SecondsForm`].
    pub fn parse(expr: &str, tz: &str) -> Result<CronSchedule, ScheduleError> {
        let zone =
            Tz::from_str(tz.trim()).map_err(|_| ScheduleError::UnknownTimezone(tz.to_string()))?;
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let expanded = expand_nickname(trimmed)?;
        let source = expanded.unwrap_or(trimmed);

        let fields = split_fields(source);
        match fields.len() {
            5 => {}
            6 | 7 => {
                return Err(ScheduleError::SecondsForm {
                    expr: trimmed.to_string(),
                    found: fields.len(),
                })
            }
            n => {
                return Err(ScheduleError::FieldCount {
                    expr: trimmed.to_string(),
                    found: n,
                })
            }
        }

        let mut parsed = Vec::with_capacity(5);
        for (def, (column, text)) in FIELDS.iter().zip(&fields) {
            let field = parse_field(def, text).map_err(|reason| ScheduleError::Field {
                index: def.index,
                name: def.name,
                // Columns of an expanded nickname would point into text the user
                // never wrote; fields of a nickname cannot be wrong anyway.
                column: *column,
                text: (*text).to_string(),
                reason,
            })?;
            parsed.push(field);
        }

        check_some_day_exists(&parsed[2], &parsed[3], &parsed[4], trimmed)?;
        // croner's own once-only DST rule covers only a single minute and hour;
        // we apply it to every schedule with fixed minute and hour values.
        let wall_clock = !parsed[0].starts_with_star && !parsed[1].starts_with_star;

        let dom = &parsed[2];
        let dow = &parsed[4];
        // croner ORs the day fields unless one is exactly `*`; Vixie cron ANDs them
        // whenever one *starts* with `*` (e.g. `*/2`). croner's `+` prefix on the
        // day-of-week field asks for AND.
        let and_days = (dom.starts_with_star || dow.starts_with_star)
            && dom.normalized != "*"
            && dow.normalized != "*";
        let normalized = format!(
            "{} {} {} {} {}{}",
            parsed[0].normalized,
            parsed[1].normalized,
            dom.normalized,
            parsed[3].normalized,
            if and_days { "+" } else { "" },
            dow.normalized,
        );

        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&normalized)
            .map_err(|e| ScheduleError::Cron {
                expr: trimmed.to_string(),
                message: e.to_string(),
            })?;

        Ok(CronSchedule {
            expr: trimmed.to_string(),
            tz: zone,
            cron,
            wall_clock,
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the schedule's time zone.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The first fire time strictly after `t`, or `None` if there is none before
    /// the year 5000 (croner's search limit).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        if self.wall_clock {
            return self.wall_clock_next(t);
        }
        // Fire times are whole seconds: searching after the whole second of `t`
        // never returns a time ≤ t, and never misses one > t.
        let (secs, _) = split_millis(t);
        let start = self.local(secs)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        to_timestamp(&next)
    }

    /// The first `n` fire times strictly after `t`, in order (fewer if the
    /// schedule runs out before the year 5000).
    pub fn next_n(&self, t: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut cursor = t;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// The last fire time strictly before `t`.
    pub fn prev_before(&self, t: Timestamp) -> Option<Timestamp> {
        let (secs, millis) = split_millis(t);
        // With a sub-second part, the whole second of `t` itself is before `t`.
        self.prev_from(secs, millis != 0)
    }

    /// The last fire time at or before `t` (the one whose window `t` may be in).
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let (secs, _) = split_millis(t);
        self.prev_from(secs, true)
    }

    /// A one-line English description, e.g. `At 22:00, on Monday through Friday
    /// (Europe/Berlin).` — croner's wording plus the time zone.
    pub fn describe(&self) -> String {
        let text = self.cron.describe();
        let text = text.trim().trim_end_matches('.');
        if text.is_empty() {
            format!("cron `{}` ({})", self.expr, self.tz.name())
        } else {
            format!("{text} ({}).", self.tz.name())
        }
    }

    fn prev_from(&self, secs: i64, inclusive: bool) -> Option<Timestamp> {
        if self.wall_clock {
            let bound = secs.checked_mul(1000)?.checked_add(i64::from(inclusive))?;
            return self.wall_clock_prev(Timestamp(bound));
        }
        let start = self.local(secs)?;
        let prev = self.cron.find_previous_occurrence(&start, inclusive).ok()?;
        to_timestamp(&prev)
    }

    // Fixed wall-clock times (Vixie cron's rule for schedules whose minute and
    // hour do not start with `*`): croner applies its once-only DST rule only to
    // a single minute and hour, so `30 2,14 * * *` would skip the gap and fire
    // twice in the fold. We search local (naive) time and map each occurrence to
    // an instant ourselves: the earlier instant of a repeated time, the end of
    // the gap for a missing one. That map never decreases, which is what lets
    // both searches stop at the first instant on the right side of `t`.
    // (croner's own iterator is not used: it prints errors to stderr.)

    /// First fire strictly after `t`.
    fn wall_clock_next(&self, t: Timestamp) -> Option<Timestamp> {
        // No occurrence before local(t) maps after t, since the map is monotone.
        let mut local = self.local(t.0.div_euclid(1000))?.naive_local();
        let mut inclusive = true;
        for _ in 0..MAX_STEPS {
            local = self.cron.find_next_occurrence(&local, inclusive).ok()?;
            inclusive = false;
            let at = self.wall_clock_instant(local)?;
            if at > t {
                return Some(at);
            }
        }
        None
    }

    /// Last fire strictly before `t`.
    fn wall_clock_prev(&self, t: Timestamp) -> Option<Timestamp> {
        // In the second pass of a fold, the local times from local(t) to the
        // fold's end happened earlier (in the first pass): start past them.
        let secs = t.0.div_euclid(1000);
        let at = self.local(secs)?;
        let mut local = at.naive_local();
        if let LocalResult::Ambiguous(first, second) = self.tz.from_local_datetime(&local) {
            if second.timestamp() == secs {
                let fold = first.offset().fix().local_minus_utc()
                    - second.offset().fix().local_minus_utc();
                local = local.checked_add_signed(TimeDelta::seconds(i64::from(fold)))?;
            }
        }
        let mut inclusive = true;
        for _ in 0..MAX_STEPS {
            local = self.cron.find_previous_occurrence(&local, inclusive).ok()?;
            inclusive = false;
            let at = self.wall_clock_instant(local)?;
            if at < t {
                return Some(at);
            }
        }
        None
    }

    fn wall_clock_instant(&self, local: NaiveDateTime) -> Option<Timestamp> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(dt) | LocalResult::Ambiguous(dt, _) => to_timestamp(&dt),
            LocalResult::None => {
                // In a gap: the first whole local minute that exists is its end.
                let mut probe = local.with_second(0)?;
                for _ in 0..24 * 60 {
                    probe = probe.checked_add_signed(TimeDelta::minutes(1))?;
                    if let Some(dt) = self.tz.from_local_datetime(&probe).earliest() {
                        return to_timestamp(&dt);
                    }
                }
                None
            }
        }
    }

    /// `t` as wall-clock time in the schedule's zone, e.g. `Mon 2026-11-23 22:00 CET`.
    pub fn local_label(&self, t: Timestamp) -> String {
        match self.local(split_millis(t).0) {
            Some(dt) => dt.format("%a %Y-%m-%d %H:%M %Z").to_string(),
            None => t.rfc3339(),
        }
    }

    fn local(&self, secs: i64) -> Option<DateTime<Tz>> {
        Some(DateTime::<Utc>::from_timestamp(secs, 0)?.with_timezone(&self.tz))
    }
}

fn split_millis(t: Timestamp) -> (i64, i64) {
    (t.0.div_euclid(1000), t.0.rem_euclid(1000))
}

fn to_timestamp<Z: TimeZone>(dt: &DateTime<Z>) -> Option<Timestamp> {
    dt.timestamp().checked_mul(1000).map(Timestamp)
}

fn expand_nickname(expr: &str) -> Result<Option<&'static str>, ScheduleError> {
    if !expr.starts_with('@') {
        return Ok(None);
    }
    let expanded = match expr.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return Err(ScheduleError::Nickname(expr.to_string())),
    };
    Ok(Some(expanded))
}

/// Whitespace-separated fields with their 1-based (character) columns.
fn split_fields(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (byte, column)
    for (col, (byte, ch)) in expr.char_indices().enumerate() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some((byte, col + 1)),
            (true, Some((b, c))) => {
                out.push((c, &expr[b..byte]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some((b, c)) = start {
        out.push((c, &expr[b..]));
    }
    out
}

fn parse_field(def: &FieldDef, text: &str) -> Result<ParsedField, String> {
    if let Some(ch) = text.chars().find(|c| matches!(c, '#' | '?')) {
        return Err(format!(
            "`{ch}` is a croner/Quartz extension, not standard crontab"
        ));
    }
    let mut values = 0u64;
    let mut parts = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item (two commas, or a comma at an end)".to_string());
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        let step = match step {
            None => None,
            Some(s) => {
                let n: u32 = s
                    .parse()
                    .map_err(|_| format!("step `{s}` is not a positive number"))?;
                if n == 0 {
                    return Err("step 0 never advances: use 1 or more".to_string());
                }
                if n > def.max {
                    return Err(format!(
                        "step {n} is larger than the field's maximum {}",
                        def.max
                    ));
                }
                Some(n)
            }
        };
        let (lo, hi, norm_base) = if base == "*" {
            (def.min, def.max, "*".to_string())
        } else if let Some((a, b)) = base.split_once('-') {
            let lo = parse_value(def, a, false)?;
            let hi = parse_value(def, b, true)?;
            if lo > hi {
                return Err(format!(
                    "range {a}-{b} runs backwards: write the smaller value first"
                ));
            }
            (lo, hi, format!("{lo}-{hi}"))
        } else {
            if step.is_some() {
                return Err(format!(
                    "a step needs `*` or a range before it, e.g. `*/{s}` or `{base}-{max}/{s}`",
                    s = step.unwrap_or(1),
                    max = def.max
                ));
            }
            let v = parse_value(def, base, false)?;
            (v, v, v.to_string())
        };
        let stride = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            values |= 1u64 << v;
            v += stride;
        }
        parts.push(match step {
            Some(s) => format!("{norm_base}/{s}"),
            None => norm_base,
        });
    }
    // Sunday is one day whether written 0 or 7.
    if def.index == 5 && values & (1 << 7) != 0 {
        values = (values | 1) & !(1 << 7);
    }
    Ok(ParsedField {
        normalized: parts.join(","),
        values,
        starts_with_star: text.starts_with('*'),
    })
}

/// A number or (month/day fields) a three-letter name. `range_end` lets `SUN` at
/// the end of a range mean 7, so `MON-SUN` and `SAT-SUN` work.
fn parse_value(def: &FieldDef, text: &str, range_end: bool) -> Result<u32, String> {
    if text.is_empty() {
        return Err("missing value in a range".to_string());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let v: u32 = text
            .parse()
            .map_err(|_| format!("{text} is out of range {}-{}", def.min, def.max))?;
        if v < def.min || v > def.max {
            return Err(format!("{v} is out of range {}-{}", def.min, def.max));
        }
        return Ok(v);
    }
    match def.names {
        Some((names, word)) => {
            let upper = text.to_ascii_uppercase();
            match names.iter().position(|n| *n == upper) {
                Some(i) => {
                    let v = def.min + i as u32;
                    Ok(if def.index == 5 && v == 0 && range_end {
                        7
                    } else {
                        v
                    })
                }
                None if is_extension(text) => Err(extension(text)),
                None => Err(format!("unknown {word} name")),
            }
        }
        None if is_extension(text) => Err(extension(text)),
        None => Err(format!(
            "`{text}` is not a number (names are allowed only for month and day of week)"
        )),
    }
}

/// `L`, `LW`, `15W`, `5L`: croner/Quartz syntax that crontab does not have.
fn is_extension(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let head = upper.trim_end_matches(['L', 'W']);
    head.len() < upper.len() && head.bytes().all(|b| b.is_ascii_digit())
}

fn extension(text: &str) -> String {
    format!("`{text}` is croner/Quartz syntax (L/W), not standard crontab")
}

/// Reject `0 0 30 2 *` and the like, which croner would search for until year 5000.
fn check_some_day_exists(
    dom: &ParsedField,
    month: &ParsedField,
    dow: &ParsedField,
    expr: &str,
) -> Result<(), ScheduleError> {
    // With OR semantics the weekday always comes round. Otherwise a (month, day)
    // pair must exist; under AND it then meets each weekday within 28 years.
    if dow.normalized != "*" && !(dom.starts_with_star || dow.starts_with_star) {
        return Ok(());
    }
    const MAX_DAY: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let possible = (1..=12u32).any(|m| {
        month.values & (1 << m) != 0
            && (1..=MAX_DAY[m as usize]).any(|d| dom.values & (1 << d) != 0)
    });
    if possible {
        Ok(())
    } else {
        Err(ScheduleError::NeverFires(expr.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::ts;

    fn sched(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn err(expr: &str) -> String {
        match CronSchedule::parse(expr, "UTC") {
            Ok(_) => panic!("`{expr}` should not parse"),
            Err(e) => e.to_string(),
        }
    }

    fn next5(expr: &str, tz: &str, from: &str) -> Vec<String> {
        sched(expr, tz)
            .next_n(ts(from), 5)
            .into_iter()
            .map(|t| t.rfc3339())
            .collect()
    }

    #[test]
    fn parses_standard_forms_with_names_ranges_steps_lists() {
        // Each pair: expression, first fire after 2026-11-20T12:00Z (a Friday), UTC.
        let cases = [
            ("0 22 * * MON-FRI", "2026-11-20T22:00:00.000Z"),
            ("*/15 2-4 * * *", "2026-11-21T02:00:00.000Z"),
            ("30 2 * * SAT,SUN", "2026-11-21T02:30:00.000Z"),
            ("30 2 * * sat,sun", "2026-11-21T02:30:00.000Z"),
            ("0 12-18/3 * * *", "2026-11-20T15:00:00.000Z"),
            ("5,35 * * * *", "2026-11-20T12:05:00.000Z"),
            ("0 0 1 jan,JUL *", "2027-01-01T00:00:00.000Z"),
            ("0 9 * DEC MON", "2026-12-07T09:00:00.000Z"),
            ("0 6 * * 0", "2026-11-22T06:00:00.000Z"),
            ("0 6 * * 7", "2026-11-22T06:00:00.000Z"),
            ("0 6 * * SUN", "2026-11-22T06:00:00.000Z"),
            ("0 6 * * SAT-SUN", "2026-11-21T06:00:00.000Z"),
            ("0 6 * * 6-7", "2026-11-21T06:00:00.000Z"),
            ("@daily", "2026-11-21T00:00:00.000Z"),
            ("  0   22 * *  FRI  ", "2026-11-20T22:00:00.000Z"),
        ];
        for (expr, want) in cases {
            let got = sched(expr, "UTC").next_after(ts("2026-11-20T12:00:00Z"));
            assert_eq!(got.map(|t| t.rfc3339()).as_deref(), Some(want), "{expr}");
        }
    }

    #[test]
    fn sunday_as_0_and_7_is_the_same_schedule() {
        let from = "2026-11-20T12:00:00Z";
        assert_eq!(
            next5("0 3 * * 0", "UTC", from),
            next5("0 3 * * 7", "UTC", from)
        );
        assert_eq!(
            next5("0 3 * * 0", "UTC", from),
            next5("0 3 * * SUN", "UTC", from)
        );
        // MON-SUN is every day, not an empty or backwards range.
        assert_eq!(
            next5("0 3 * * MON-SUN", "UTC", from),
            next5("0 3 * * *", "UTC", from)
        );
    }

    #[test]
    fn wrong_field_count_is_rejected() {
        let e = err("0 22 * *");
        assert!(e.contains("has 4 field(s): write 5 fields"), "{e}");
        let e = err("0 22 * * * * * *");
        assert!(e.contains("has 8 field(s)"), "{e}");
        assert_eq!(
            CronSchedule::parse("   ", "UTC").err(),
            Some(ScheduleError::Empty)
        );
    }

    #[test]
    fn seconds_forms_are_rejected_with_a_hint_to_write_5_fields() {
        for expr in ["0 0 22 * * MON-FRI", "0 0 22 * * MON-FRI 2026"] {
            let e = err(expr);
            assert!(e.contains("seconds/year form"), "{e}");
            assert!(e.contains("write 5 fields"), "{e}");
        }
    }

    #[test]
    fn out_of_range_values_name_field_and_column() {
        assert_eq!(
            err("60 22 * * *"),
            "field 1 (minute) `60` at column 1: 60 is out of range 0-59"
        );
        assert_eq!(
            err("0 24 * * *"),
            "field 2 (hour) `24` at column 3: 24 is out of range 0-23"
        );
        assert_eq!(
            err("0 0 0 * *"),
            "field 3 (day of month) `0` at column 5: 0 is out of range 1-31"
        );
        assert_eq!(
            err("0 0 * 13 *"),
            "field 4 (month) `13` at column 7: 13 is out of range 1-12"
        );
        assert_eq!(
            err("0 0 * * 8"),
            "field 5 (day of week) `8` at column 9: 8 is out of range 0-7"
        );
    }

    #[test]
    fn unknown_names_and_misplaced_names_are_rejected() {
        assert_eq!(
            err("0 22 * * FOO"),
            "field 5 (day of week) `FOO` at column 10: unknown day name"
        );
        assert_eq!(
            err("0 22 * JNA *"),
            "field 4 (month) `JNA` at column 8: unknown month name"
        );
        // croner alone would read MON in the month field as 1 (January).
        assert_eq!(
            err("0 0 * MON *"),
            "field 4 (month) `MON` at column 7: unknown month name"
        );
        let e = err("0 MON * * *");
        assert!(
            e.starts_with("field 2 (hour) `MON` at column 3: `MON` is not a number"),
            "{e}"
        );
    }

    #[test]
    fn malformed_items_say_what_is_wrong() {
        let cases = [
            ("*/0 * * * *", "step 0 never advances"),
            ("5/10 * * * *", "a step needs `*` or a range before it"),
            ("0 5-1 * * *", "range 5-1 runs backwards"),
            ("0 1,,2 * * *", "empty list item"),
            ("0 0 L * *", "not standard crontab"),
            ("0 0 * * 5L", "not standard crontab"),
            ("0 0 * * 5#2", "not standard crontab"),
            ("0 0 ? * *", "not standard crontab"),
            ("0 0 * * 1-", "missing value in a range"),
        ];
        for (expr, want) in cases {
            let e = err(expr);
            assert!(e.contains(want), "`{expr}`: {e}");
        }
        assert!(err("@reboot").contains("unknown cron nickname `@reboot`"));
        assert!(err("0 0 30 2 *").contains("never fires"));
        // 29 February exists in leap years: accepted.
        assert!(CronSchedule::parse("0 0 29 2 *", "UTC").is_ok());
    }

    #[test]
    fn unknown_timezone_is_its_own_error() {
        assert_eq!(
            CronSchedule::parse("0 22 * * *", "Europe/Berln").err(),
            Some(ScheduleError::UnknownTimezone("Europe/Berln".to_string()))
        );
        assert!(CronSchedule::parse("0 22 * * *", "America/New_York").is_ok());
        assert!(CronSchedule::parse("0 22 * * *", "UTC").is_ok());
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // From 2026-03-31 (a Tuesday): Fridays 3, 10, 17, 24 April and Monday the 13th.
        assert_eq!(
            next5("0 0 13 * FRI", "UTC", "2026-03-31T00:00:00Z"),
            [
                "2026-04-03T00:00:00.000Z",
                "2026-04-10T00:00:00.000Z",
                "2026-04-13T00:00:00.000Z",
                "2026-04-17T00:00:00.000Z",
                "2026-04-24T00:00:00.000Z",
            ]
        );
        // Friday the 13th fires once, not twice.
        let s = sched("0 0 13 * FRI", "UTC");
        assert_eq!(
            s.next_n(ts("2026-03-12T00:00:00Z"), 2),
            [ts("2026-03-13T00:00:00Z"), ts("2026-03-20T00:00:00Z")]
        );
    }

    #[test]
    fn a_star_step_day_field_means_and_as_in_vixie_cron() {
        // Odd days of the month that are also Fridays (OR would start on 1 March).
        assert_eq!(
            next5("0 0 */2 * FRI", "UTC", "2026-03-01T00:00:00Z"),
            [
                "2026-03-13T00:00:00.000Z",
                "2026-03-27T00:00:00.000Z",
                "2026-04-03T00:00:00.000Z",
                "2026-04-17T00:00:00.000Z",
                "2026-05-01T00:00:00.000Z",
            ]
        );
    }

    #[test]
    fn weeknights_at_22_from_a_friday_afternoon() {
        // 2026-11-20 is a Friday; 13:00 in Berlin (CET, UTC+1).
        assert_eq!(
            next5("0 22 * * MON-FRI", "Europe/Berlin", "2026-11-20T12:00:00Z"),
            [
                "2026-11-20T21:00:00.000Z",
                "2026-11-23T21:00:00.000Z",
                "2026-11-24T21:00:00.000Z",
                "2026-11-25T21:00:00.000Z",
                "2026-11-26T21:00:00.000Z",
            ]
        );
    }

    #[test]
    fn next_after_and_prev_before_are_strict_to_the_millisecond() {
        for tz in ["UTC", "Europe/Berlin"] {
            for expr in ["0 22 * * *", "0 22-23 * * *", "0 */2 * * *"] {
                let s = sched(expr, tz);
                let fire = s
                    .next_after(ts("2026-11-20T12:00:00Z"))
                    .unwrap_or(Timestamp(0));
                let ctx = format!("{expr} {tz}");
                assert!(fire > ts("2026-11-20T12:00:00Z"), "{ctx}");
                assert_eq!(s.next_after(Timestamp(fire.0 - 1)), Some(fire), "{ctx}");
                assert!(s.next_after(fire) > Some(fire), "{ctx}");
                assert_eq!(s.prev_before(Timestamp(fire.0 + 1)), Some(fire), "{ctx}");
                assert!(s.prev_before(fire) < Some(fire), "{ctx}");
                assert_eq!(s.last_at_or_before(fire), Some(fire), "{ctx}");
                assert_eq!(
                    s.last_at_or_before(Timestamp(fire.0 - 1)),
                    s.prev_before(fire),
                    "{ctx}"
                );
            }
        }
    }

    // --- DST: `30 2 * * *` fires exactly once on each change day. ---

    #[test]
    fn local_labels_name_the_zone_abbreviation_of_the_instant() {
        let s =
            CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.local_label(crate::schedule::test_util::ts("2026-03-29T01:00:00Z")),
            "Sun 2026-03-29 03:00 CEST"
        );
        assert_eq!(
            s.local_label(crate::schedule::test_util::ts("2026-11-23T21:00:00Z")),
            "Mon 2026-11-23 22:00 CET"
        );
    }

    #[test]
    fn berlin_spring_forward_fires_once_at_0300_local() {
        let s = sched("30 2 * * *", "Europe/Berlin");
        // 02:30 does not exist on 2026-03-29: it runs at 03:00 CEST = 01:00Z.
        assert_eq!(
            s.next_n(ts("2026-03-28T00:00:00Z"), 3),
            [
                ts("2026-03-28T01:30:00Z"), // 02:30 CET
                ts("2026-03-29T01:00:00Z"), // 03:00 CEST
                ts("2026-03-30T00:30:00Z"), // 02:30 CEST
            ]
        );
        // Backwards from the same day agrees.
        assert_eq!(
            s.prev_before(ts("2026-03-29T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            s.prev_before(ts("2026-03-29T01:00:00Z")),
            Some(ts("2026-03-28T01:30:00Z"))
        );
    }

    #[test]
    fn berlin_fall_back_fires_once_at_the_first_0230() {
        let s = sched("30 2 * * *", "Europe/Berlin");
        // 02:30 happens at 00:30Z (CEST) and 01:30Z (CET): only the first runs.
        assert_eq!(
            s.next_n(ts("2026-10-24T00:00:00Z"), 3),
            [
                ts("2026-10-24T00:30:00Z"),
                ts("2026-10-25T00:30:00Z"),
                ts("2026-10-26T01:30:00Z")
            ]
        );
        // Asked from between the two 02:30s, the second is not a fire either way.
        assert_eq!(
            s.next_after(ts("2026-10-25T01:00:00Z")),
            Some(ts("2026-10-26T01:30:00Z"))
        );
        assert_eq!(
            s.prev_before(ts("2026-10-25T01:45:00Z")),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            s.prev_before(ts("2026-10-25T12:00:00Z")),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        // At 02:10 CET (second pass), 02:30 CEST is already an hour in the past.
        let second_pass = ts("2026-10-25T01:10:00Z");
        assert_eq!(s.prev_before(second_pass), Some(ts("2026-10-25T00:30:00Z")));
        assert_eq!(
            s.last_at_or_before(second_pass),
            Some(ts("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn new_york_spring_forward_fires_once_at_0300_local() {
        let s = sched("30 2 * * *", "America/New_York");
        assert_eq!(
            s.next_n(ts("2026-03-07T00:00:00Z"), 3),
            [
                ts("2026-03-07T07:30:00Z"), // 02:30 EST
                ts("2026-03-08T07:00:00Z"), // 03:00 EDT
                ts("2026-03-09T06:30:00Z"), // 02:30 EDT
            ]
        );
    }

    #[test]
    fn new_york_fall_back_fires_once() {
        // New York repeats 01:00–02:00 (02:00 EDT → 01:00 EST), so 02:30 exists
        // once that day, in EST.
        let s = sched("30 2 * * *", "America/New_York");
        assert_eq!(
            s.next_n(ts("2026-10-31T00:00:00Z"), 3),
            [
                ts("2026-10-31T06:30:00Z"), // 02:30 EDT
                ts("2026-11-01T07:30:00Z"), // 02:30 EST
                ts("2026-11-02T07:30:00Z"),
            ]
        );
        // The repeated time there is 01:30: the first (EDT) one runs, once.
        let s = sched("30 1 * * *", "America/New_York");
        assert_eq!(
            s.next_n(ts("2026-10-31T00:00:00Z"), 3),
            [
                ts("2026-10-31T05:30:00Z"), // 01:30 EDT
                ts("2026-11-01T05:30:00Z"), // 01:30 EDT, not 06:30Z (EST)
                ts("2026-11-02T06:30:00Z"), // 01:30 EST
            ]
        );
    }

    #[test]
    fn fixed_time_lists_get_the_same_dst_rule() {
        // croner alone skips 02:30 on 29 March and fires twice on 25 October here.
        let s = sched("30 2,14 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_n(ts("2026-03-28T12:00:00Z"), 3),
            [
                ts("2026-03-28T13:30:00Z"),
                ts("2026-03-29T01:00:00Z"),
                ts("2026-03-29T12:30:00Z")
            ]
        );
        assert_eq!(
            s.next_n(ts("2026-10-24T12:00:00Z"), 3),
            [
                ts("2026-10-24T12:30:00Z"),
                ts("2026-10-25T00:30:00Z"),
                ts("2026-10-25T13:30:00Z")
            ]
        );
        // Two times inside one gap collapse into one fire at its end.
        let s = sched("0,30 2 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_n(ts("2026-03-28T12:00:00Z"), 2),
            [ts("2026-03-29T01:00:00Z"), ts("2026-03-30T00:00:00Z")]
        );
        assert_eq!(
            s.prev_before(ts("2026-03-29T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn single_fixed_times_agree_with_croner_across_dst() {
        // Our wall-clock search must match croner where croner's rule applies.
        for tz in ["Europe/Berlin", "America/New_York"] {
            for expr in ["30 2 * * *", "30 1 * * *", "0 3 * * *", "15 2 * * SUN"] {
                let ours = sched(expr, tz);
                let mut theirs = ours.clone();
                theirs.wall_clock = false;
                for from in ["2026-03-01T00:00:00Z", "2026-10-20T00:00:00Z"] {
                    assert_eq!(
                        ours.next_n(ts(from), 20),
                        theirs.next_n(ts(from), 20),
                        "{expr} {tz} from {from}"
                    );
                }
                let end = ts("2026-11-15T00:00:00Z");
                assert_eq!(
                    ours.prev_before(end),
                    theirs.prev_before(end),
                    "{expr} {tz}"
                );
            }
        }
    }

    #[test]
    fn interval_schedules_skip_the_gap_and_repeat_in_the_fold() {
        let s = sched("*/30 2-3 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_n(ts("2026-03-29T00:00:00Z"), 2),
            [ts("2026-03-29T01:00:00Z"), ts("2026-03-29T01:30:00Z")] // 03:00, 03:30 CEST
        );
        let s = sched("*/30 2 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_n(ts("2026-10-24T23:00:00Z"), 5),
            [
                ts("2026-10-25T00:00:00Z"), // 02:00 CEST
                ts("2026-10-25T00:30:00Z"), // 02:30 CEST
                ts("2026-10-25T01:00:00Z"), // 02:00 CET
                ts("2026-10-25T01:30:00Z"), // 02:30 CET
                ts("2026-10-26T01:00:00Z"),
            ]
        );
        // Hourly keeps one hour of real time between fires through the fold.
        let s = sched("0 * * * *", "Europe/Berlin");
        let fires = s.next_n(ts("2026-10-24T23:30:00Z"), 4);
        assert!(
            fires.windows(2).all(|w| w[1].0 - w[0].0 == 3_600_000),
            "{fires:?}"
        );
    }

    #[test]
    fn describe_mentions_time_and_zone() {
        let d = sched("0 22 * * MON-FRI", "Europe/Berlin").describe();
        assert!(d.starts_with("At 22:00, on Monday"), "{d}");
        assert!(d.ends_with("(Europe/Berlin)."), "{d}");
        let d = sched("0 0 13 * FRI", "UTC").describe();
        assert!(d.contains("day 13 or Friday"), "{d}");
    }
}
