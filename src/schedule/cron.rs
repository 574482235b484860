//! Standard 5-field crontab in an IANA time zone, evaluated by `croner`.
//!
//! We validate and normalise each field ourselves before croner sees it, because
//! croner accepts more than crontab (seconds, years, `L`/`W`/`#`) and replaces
//! day and month names anywhere in the string (`0 0 * MON *` would be January).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
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
/// - *Spring forward* (a local hour does not exist): a **fixed-time** schedule (one
///   minute value and one hour value, e.g. `30 2 * * *`) whose time falls in the gap
///   fires **once, at the first instant after the gap** (03:00 local in Berlin on
///   2026-03-29, i.e. `2026-03-29T01:00:00Z`). Schedules with several times a day
///   (steps, ranges or lists in minute or hour, e.g. `*/15 2-4 * * *` or
///   `30 2,14 * * *`) simply **skip** the non-existent times.
/// - *Fall back* (a local hour happens twice): a fixed-time schedule fires **once, at
///   the first occurrence** (the summer-time offset: 02:30 CEST in Berlin on
///   2026-10-25, i.e. `2026-10-25T00:30:00Z`). Schedules with several times a day fire
///   on **both** occurrences of the repeated times, since real time passes between them.
///
/// These are croner 4's rules; the tests pin them with exact UTC instants.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    tz: Tz,
    cron: Cron,
}

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
        let start = self.local(secs)?;
        let prev = self.cron.find_previous_occurrence(&start, inclusive).ok()?;
        to_timestamp(&prev)
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
