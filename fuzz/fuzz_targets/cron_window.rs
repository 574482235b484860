//! Cron expressions, time zones and porting windows: `cron\nduration\nzone`.
//! Every answer about time must be consistent with the question.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow::clock::Timestamp;
use portflow::schedule::{CronSchedule, Window};

/// Instants around the 2026 DST changes in Europe and the US, and the epoch.
const AT: [i64; 5] = [
    0,
    1_774_746_000_000, // 2026-03-29T01:00:00Z
    1_773_550_800_000, // 2026-03-15T05:00:00Z
    1_792_890_000_000, // 2026-10-25T01:00:00Z
    4_102_444_800_000, // 2100-01-01
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let cron = parts.next().unwrap_or("");
    let duration = parts.next().unwrap_or("1h");
    let tz = parts.next().unwrap_or("UTC");
    if let Ok(s) = CronSchedule::parse(cron, tz) {
        let _ = s.describe();
        for t in AT.map(Timestamp) {
            if let Some(n) = s.next_after(t) {
                assert!(n > t, "{cron} {tz}: next {n:?} not after {t:?}");
                let _ = s.local_label(n);
            }
            if let Some(p) = s.last_at_or_before(t) {
                assert!(p <= t, "{cron} {tz}: last {p:?} after {t:?}");
            }
            assert!(s.next_n(t, 3).windows(2).all(|w| w[0] < w[1]));
        }
    }
    if let Ok(w) = Window::parse(cron, duration, tz) {
        for t in AT.map(Timestamp) {
            if let Some(o) = w.next_open(t) {
                assert!(o >= t);
            }
            if w.contains(t) {
                assert!(w.closes_at(t).is_some_and(|c| c > t));
            }
        }
    }
});
