//! Key layout of the single ordered key space.
//!
//! ```text
//! m/schema                         schema version
//! m/commit                         commit counter (see `sled_store::CommitMark`)
//! r/<run>                          run record
//! i/<run>/<idx>                    instance snapshot
//! e/<run>/<idx>/<seq>              events of one transition, from seq on (append-only):
//!                                  one event, or an array of them (schema 2)
//! s/<run>/<subject>                subject → idx
//! t/<due ms>/<run>/<idx>           timer index (due instant, instance)
//! c/<name>                         schedule (spec and firing state)
//! u/<tenant>                       a simulated tenant runs have used: its identity
//! ```
//! Numbers are zero-padded decimal so byte order is numeric order; run ids never
//! contain `/`.

/// Schema version key.
pub const SCHEMA: &[u8] = b"m/schema";

/// Identifies one instance: run id and subject index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// Run id.
    pub run: String,
    /// Subject index within the run.
    pub idx: u32,
}

/// Run record key.
pub fn run(run: &str) -> Vec<u8> {
    format!("r/{run}").into_bytes()
}

/// Prefix of all run records.
pub const RUN_PREFIX: &[u8] = b"r/";

/// Instance snapshot key.
pub fn instance(k: &InstanceKey) -> Vec<u8> {
    format!("i/{}/{:010}", k.run, k.idx).into_bytes()
}

/// Prefix of a run's instances.
pub fn instance_prefix(run: &str) -> Vec<u8> {
    format!("i/{run}/").into_bytes()
}

/// Event key.
pub fn event(k: &InstanceKey, seq: u32) -> Vec<u8> {
    format!("e/{}/{:010}/{:010}", k.run, k.idx, seq).into_bytes()
}

/// Prefix of one instance's events.
pub fn event_prefix(k: &InstanceKey) -> Vec<u8> {
    format!("e/{}/{:010}/", k.run, k.idx).into_bytes()
}

/// Subject index key.
pub fn subject(run: &str, subject: &str) -> Vec<u8> {
    format!("s/{run}/{subject}").into_bytes()
}

/// Width of a timer slot, in ms. An instance's timer key holds its due time
/// rounded down to the slot, so a due that moves within one slot (sub-second
/// polls) leaves the key alone: two writes fewer per poll. A restart may wake
/// an instance up to one slot early, which every phase already handles.
pub const TIMER_SLOT_MS: i64 = 1000;

/// The slot of a due time (what its timer key holds).
pub fn timer_slot(due_ms: i64) -> i64 {
    due_ms.max(0).div_euclid(TIMER_SLOT_MS) * TIMER_SLOT_MS
}

/// The timer key of an instance due at `due_ms` (in its slot).
pub fn timer_of(due_ms: i64, k: &InstanceKey) -> Vec<u8> {
    timer(timer_slot(due_ms), k)
}

/// Timer key at exactly `due_ms` (as stored; [`timer_of`] for a due time).
pub fn timer(due_ms: i64, k: &InstanceKey) -> Vec<u8> {
    format!("t/{:020}/{}/{:010}", due_ms.max(0), k.run, k.idx).into_bytes()
}

/// Prefix of all timers.
pub const TIMER_PREFIX: &[u8] = b"t/";

/// Decode a timer key into (due ms, instance).
pub fn parse_timer(key: &[u8]) -> Option<(i64, InstanceKey)> {
    let s = std::str::from_utf8(key).ok()?;
    let rest = s.strip_prefix("t/")?;
    let mut parts = rest.splitn(3, '/');
    let due = parts.next()?.parse().ok()?;
    let run = parts.next()?.to_string();
    let idx = parts.next()?.parse().ok()?;
    Some((due, InstanceKey { run, idx }))
}

/// Schedule key.
pub fn schedule(name: &str) -> Vec<u8> {
    format!("c/{name}").into_bytes()
}

/// Prefix of all schedules.
pub const SCHEDULE_PREFIX: &[u8] = b"c/";

/// Key of a simulated tenant's use record.
pub fn tenant_use(name: &str) -> Vec<u8> {
    format!("u/{name}").into_bytes()
}

/// Prefix of all tenant use records.
pub const TENANT_USE_PREFIX: &[u8] = b"u/";

/// Prefix of a run's subject index entries.
pub fn subject_prefix(run: &str) -> Vec<u8> {
    format!("s/{run}/").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_due_and_parse_back() {
        let k = InstanceKey {
            run: "20261123-101500-ab12".into(),
            idx: 7,
        };
        let a = timer(5, &k);
        let b = timer(40, &k);
        assert!(a < b);
        assert_eq!(parse_timer(&b), Some((40, k)));
        assert_eq!(parse_timer(b"x/1"), None);
    }
}
