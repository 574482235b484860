//! Integrity check of an engine store (`portflow verify`): every record
//! decodes and its checksum holds, and runs, instances, events, timers and the
//! subject index agree. Read-only; works on any [`Store`].

use std::collections::{BTreeMap, BTreeSet};

use super::integrity::{self, Seal};
use super::keys::{self, InstanceKey};
use super::records::{self, TenantUse};
use super::{Store, StoreError};
use crate::engine::instance::Instance;
use crate::engine::run::RunRecord;

/// One thing found, at a key (or a group of keys).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Where.
    pub key: String,
    /// What.
    pub problem: String,
}

/// What the check of an engine store found.
#[derive(Debug, Default, serde::Serialize)]
pub struct EngineCheck {
    /// Records read.
    pub records: u64,
    /// Of which written before checksums (read unchecked).
    pub unchecked: u64,
    /// Runs.
    pub runs: usize,
    /// Instances.
    pub instances: usize,
    /// Events.
    pub events: u64,
    /// Damage: something is lost or wrong.
    pub damage: Vec<Finding>,
    /// Worth knowing, harmless.
    pub notes: Vec<Finding>,
    /// Simulated tenants the runs have used.
    #[serde(skip)]
    pub tenants: Vec<TenantUse>,
}

/// What is kept of an instance for the cross-checks.
struct Seen {
    subject: String,
    seq: u32,
    due: Option<i64>,
    terminal: bool,
}

/// History read so far of one instance.
#[derive(Default)]
struct History {
    next: u32,
    events: u32,
}

fn text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// `e/<run>/<idx>/<seq>` → (instance, seq).
fn parse_event_key(key: &[u8]) -> Option<(InstanceKey, u32)> {
    let s = std::str::from_utf8(key).ok()?.strip_prefix("e/")?;
    let mut parts = s.rsplitn(3, '/');
    let seq = parts.next()?.parse().ok()?;
    let idx = parts.next()?.parse().ok()?;
    let run = parts.next()?.to_string();
    Some((InstanceKey { run, idx }, seq))
}

/// `i/<run>/<idx>` → instance.
fn parse_instance_key(key: &[u8]) -> Option<InstanceKey> {
    let s = std::str::from_utf8(key).ok()?.strip_prefix("i/")?;
    let (run, idx) = s.rsplit_once('/')?;
    Some(InstanceKey {
        run: run.to_string(),
        idx: idx.parse().ok()?,
    })
}

/// Check every record of `store`. A read error from the engine ends the scan
/// (it is reported as damage, with what was read up to there).
pub fn check_engine(store: &dyn Store) -> EngineCheck {
    let mut c = EngineCheck::default();
    let mut runs: BTreeMap<String, u32> = BTreeMap::new();
    let mut instances: BTreeMap<InstanceKey, Seen> = BTreeMap::new();
    let mut histories: BTreeMap<InstanceKey, History> = BTreeMap::new();
    let mut subjects: Vec<(String, String, u32)> = Vec::new();
    let mut timers: Vec<(i64, InstanceKey)> = Vec::new();
    let mut schema = None;
    let mut last_key = Vec::new();
    let damage = |c: &mut EngineCheck, key: &[u8], problem: String| {
        c.damage.push(Finding {
            key: text(key),
            problem,
        })
    };
    let scanned = store.scan_prefix(b"", &mut |k, v| {
        last_key = k.to_vec();
        c.records += 1;
        // Timer values are empty; the schema version and commit counter are raw.
        let sealed = !(k.starts_with(keys::TIMER_PREFIX) || k.starts_with(b"m/"));
        if sealed {
            match integrity::open(k, v) {
                Ok((_, Seal::Legacy)) => c.unchecked += 1,
                Ok((_, Seal::Checked)) => {}
                Err(e) => {
                    damage(&mut c, k, e.to_string());
                    return true;
                }
            }
        }
        let failed = |c: &mut EngineCheck, e: StoreError| damage(c, k, e.to_string());
        match &k[..k.len().min(2)] {
            b"r/" => match records::decode::<RunRecord>(k, v) {
                Ok(r) => {
                    if keys::run(&r.id) != k {
                        damage(&mut c, k, format!("holds run {:?}", r.id));
                    }
                    runs.insert(r.id, r.subjects);
                }
                Err(e) => failed(&mut c, e),
            },
            b"i/" => match (parse_instance_key(k), records::decode::<Instance>(k, v)) {
                (Some(key), Ok(inst)) => {
                    if inst.run != key.run || inst.idx != key.idx {
                        damage(
                            &mut c,
                            k,
                            format!("holds instance {}/{}", inst.run, inst.idx),
                        );
                    }
                    instances.insert(
                        key,
                        Seen {
                            terminal: inst.is_terminal(),
                            subject: inst.subject,
                            seq: inst.seq,
                            due: inst.due.map(|d| d.0),
                        },
                    );
                }
                (None, _) => damage(&mut c, k, "not an instance key".into()),
                (_, Err(e)) => failed(&mut c, e),
            },
            b"e/" => match (parse_event_key(k), records::decode_events(k, v)) {
                (Some((key, seq)), Ok(events)) => {
                    let h = histories.entry(key).or_default();
                    if events.first().map(|e| e.seq) != Some(seq) {
                        damage(
                            &mut c,
                            k,
                            "its first event's number is not the one in its key".into(),
                        );
                    }
                    if seq != h.next {
                        damage(
                            &mut c,
                            k,
                            format!(
                                "gap in the history: events {}..{} are missing",
                                h.next,
                                seq.saturating_sub(1)
                            ),
                        );
                    }
                    for (i, e) in events.iter().enumerate() {
                        if e.seq != seq + i as u32 {
                            damage(&mut c, k, "its events are not numbered in order".into());
                            break;
                        }
                    }
                    h.next = seq + events.len() as u32;
                    h.events += events.len() as u32;
                    c.events += events.len() as u64;
                }
                (None, _) => damage(&mut c, k, "not an event key".into()),
                (_, Err(e)) => failed(&mut c, e),
            },
            b"s/" => match records::decode_subject_index(k, v) {
                Ok(idx) => {
                    let rest = text(&k[2..]);
                    match rest.split_once('/') {
                        Some((run, subject)) => {
                            subjects.push((run.to_string(), subject.to_string(), idx))
                        }
                        None => damage(&mut c, k, "not a subject index key".into()),
                    }
                }
                Err(e) => failed(&mut c, e),
            },
            b"t/" => match keys::parse_timer(k) {
                Some((due, key)) => timers.push((due, key)),
                None => damage(&mut c, k, "not a timer key".into()),
            },
            b"c/" => {
                if let Err(e) = records::decode::<crate::schedule::ScheduleRecord>(k, v) {
                    failed(&mut c, e)
                }
            }
            b"u/" => match records::decode::<TenantUse>(k, v) {
                Ok(u) => c.tenants.push(u),
                Err(e) => failed(&mut c, e),
            },
            b"m/" if k == keys::SCHEMA => {
                schema = Some(String::from_utf8_lossy(v).trim().to_string());
            }
            b"m/" if k == super::sled_store::COMMIT_KEY => {}
            _ => c.notes.push(Finding {
                key: text(k),
                problem: "a key portflow does not write".into(),
            }),
        }
        true
    });
    if let Err(e) = scanned {
        damage(
            &mut c,
            &last_key,
            format!("the store cannot be read past this key: {e}"),
        );
    }
    cross_check(&mut c, &runs, &instances, &histories, &subjects, &timers);
    match schema {
        None if c.records > 0 => c.damage.push(Finding {
            key: text(keys::SCHEMA),
            problem: "no schema version".into(),
        }),
        Some(s) if s.parse::<u32>().is_err() => c.damage.push(Finding {
            key: text(keys::SCHEMA),
            problem: format!("unreadable schema version {s:?}"),
        }),
        _ => {}
    }
    c.runs = runs.len();
    c.instances = instances.len();
    c
}

fn cross_check(
    c: &mut EngineCheck,
    runs: &BTreeMap<String, u32>,
    instances: &BTreeMap<InstanceKey, Seen>,
    histories: &BTreeMap<InstanceKey, History>,
    subjects: &[(String, String, u32)],
    timers: &[(i64, InstanceKey)],
) {
    let instance_key = |k: &InstanceKey| text(&keys::instance(k));
    let mut per_run: BTreeMap<&str, u32> = BTreeMap::new();
    for key in instances.keys() {
        *per_run.entry(key.run.as_str()).or_insert(0) += 1;
    }
    for (run, n) in &per_run {
        match runs.get(*run) {
            None => c.notes.push(Finding {
                key: text(&keys::instance_prefix(run)),
                problem: format!(
                    "{n} instance(s) of a run with no run record: its creation was interrupted \
                     (nothing ran; a schedule's daemon removes them on start)"
                ),
            }),
            Some(subjects) if subjects != n => c.damage.push(Finding {
                key: text(&keys::run(run)),
                problem: format!(
                    "the run has {subjects} subject(s) but {n} instance(s) are stored"
                ),
            }),
            Some(_) => {}
        }
    }
    // A key holds its due time's slot (older versions: the time itself).
    let timer_set: BTreeSet<(i64, &InstanceKey)> = timers
        .iter()
        .map(|(d, k)| (keys::timer_slot(*d), k))
        .collect();
    for (key, seen) in instances {
        let events = histories.get(key).map_or(0, |h| h.events);
        if events != seen.seq {
            c.damage.push(Finding {
                key: instance_key(key),
                problem: format!(
                    "the snapshot counts {} event(s) but the history holds {events}",
                    seen.seq
                ),
            });
        }
        if let (Some(due), false) = (seen.due, seen.terminal) {
            if !timer_set.contains(&(keys::timer_slot(due), key)) {
                c.damage.push(Finding {
                    key: instance_key(key),
                    problem: format!(
                        "due at {} but it has no timer: resume would never pick it up",
                        crate::clock::Timestamp(due).rfc3339()
                    ),
                });
            }
        }
    }
    for key in histories.keys() {
        if !instances.contains_key(key) {
            c.damage.push(Finding {
                key: text(&keys::event_prefix(key)),
                problem: "a history whose instance is not stored".into(),
            });
        }
    }
    for (due, key) in timers {
        match instances.get(key) {
            None => c.damage.push(Finding {
                key: text(&keys::timer(*due, key)),
                problem: "a timer for an instance that is not stored (resume would stop on it)"
                    .into(),
            }),
            Some(seen) if seen.due.map(keys::timer_slot) != Some(keys::timer_slot(*due)) => {
                c.notes.push(Finding {
                    key: text(&keys::timer(*due, key)),
                    problem: "a stale timer (the instance is due at another time): harmless".into(),
                })
            }
            Some(_) => {}
        }
    }
    let mut indexed: BTreeSet<InstanceKey> = BTreeSet::new();
    for (run, subject, idx) in subjects {
        let key = InstanceKey {
            run: run.clone(),
            idx: *idx,
        };
        match instances.get(&key) {
            Some(seen) if seen.subject == *subject => {
                indexed.insert(key);
            }
            Some(seen) => c.damage.push(Finding {
                key: text(&keys::subject(run, subject)),
                problem: format!("points at instance {idx}, which is {:?}", seen.subject),
            }),
            None => c.damage.push(Finding {
                key: text(&keys::subject(run, subject)),
                problem: format!("points at instance {idx}, which is not stored"),
            }),
        }
    }
    for (key, seen) in instances {
        if !indexed.contains(key) {
            c.damage.push(Finding {
                key: instance_key(key),
                problem: format!(
                    "subject {:?} is missing from the subject index (`show` cannot find it)",
                    seen.subject
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::engine::instance::{Event, EventKind};
    use crate::store::memory::MemoryStore;
    use crate::store::{check_schema, Batch};

    fn store_with_one_instance() -> (MemoryStore, Instance) {
        let store = MemoryStore::new();
        assert!(check_schema(&store, std::path::Path::new("mem")).is_ok());
        let mut inputs = serde_json::Map::new();
        inputs.insert("user".into(), "a@b.c".into());
        let mut inst = Instance::new("r1", 0, "a@b.c".into(), inputs, Timestamp(1000));
        let mut b = Batch::default();
        records::put_new_instance(&mut b, &inst).expect("our records encode");
        // Two transitions of one event each; the snapshot counts them.
        for seq in 0..2 {
            let event = Event {
                seq,
                at: Timestamp(1000),
                kind: EventKind::Started,
            };
            let old = inst.clone();
            inst.seq = seq + 1;
            records::put_replaced_instance(&mut b, &old, &inst, &[event])
                .expect("our records encode");
        }
        let record: RunRecord = serde_json::from_value(serde_json::json!({
            "id": "r1", "created_at": 1000,
            "workflow": {"name": "w", "version": 1, "hash": "h", "text": "", "origin": ""},
            "run_origin": "f", "run_text": "", "base_dir": "/", "subjects": 1
        }))
        .unwrap_or_else(|e| panic!("run record: {e}"));
        records::put_run(&mut b, &record).expect("our records encode");
        assert!(store.apply(&b).is_ok());
        (store, inst)
    }

    #[test]
    fn a_consistent_store_is_clean() {
        let (store, _) = store_with_one_instance();
        let c = check_engine(&store);
        assert!(c.damage.is_empty(), "{:?}", c.damage);
        assert_eq!((c.runs, c.instances, c.events), (1, 1, 2));
        assert_eq!(c.unchecked, 0);
    }

    #[test]
    fn a_timer_in_its_slot_or_at_the_exact_due_of_older_stores_is_sound() {
        let (store, inst) = store_with_one_instance();
        let key = inst.key();
        let due = inst.due.map(|d| d.0).unwrap_or_default() + 250;
        let mut next = inst.clone();
        next.due = Some(Timestamp(due));
        let mut b = Batch::default();
        records::put_replaced_instance(&mut b, &inst, &next, &[]).expect("our records encode");
        assert!(store.apply(&b).is_ok());
        assert!(
            check_engine(&store).damage.is_empty(),
            "key in the due's slot"
        );
        let mut b = Batch::default();
        b.delete(keys::timer_of(due, &key));
        b.put(keys::timer(due, &key), Vec::new());
        assert!(store.apply(&b).is_ok());
        let c = check_engine(&store);
        assert!(c.damage.is_empty() && c.notes.is_empty(), "{:?}", c.damage);
    }

    #[test]
    fn flipped_bytes_a_lost_timer_and_a_history_gap_are_damage() {
        let (store, inst) = store_with_one_instance();
        let key = inst.key();
        // A byte of the snapshot changes.
        let ik = keys::instance(&key);
        let mut v = store.get(&ik).ok().flatten().unwrap_or_default();
        let last = v.len() - 3;
        v[last] ^= 0x20;
        let mut b = Batch::default();
        b.put(ik.clone(), v);
        assert!(store.apply(&b).is_ok());
        let c = check_engine(&store);
        assert!(
            c.damage
                .iter()
                .any(|f| f.key == text(&ik) && f.problem.contains("checksum")),
            "{:?}",
            c.damage
        );

        let (store, inst) = store_with_one_instance();
        let key = inst.key();
        let mut b = Batch::default();
        if let Some(d) = inst.due {
            b.delete(keys::timer_of(d.0, &key));
        }
        b.delete(keys::event(&key, 0));
        assert!(store.apply(&b).is_ok());
        let c = check_engine(&store);
        let problems: Vec<&str> = c.damage.iter().map(|f| f.problem.as_str()).collect();
        assert!(
            problems.iter().any(|p| p.contains("no timer")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("gap")), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("counts 2")),
            "{problems:?}"
        );
    }

    #[test]
    fn unsealed_records_of_older_stores_are_read_and_counted() {
        let (store, inst) = store_with_one_instance();
        let ik = keys::instance(&inst.key());
        let mut b = Batch::default();
        b.put(ik, serde_json::to_vec(&inst).unwrap_or_default());
        assert!(store.apply(&b).is_ok());
        let c = check_engine(&store);
        assert!(c.damage.is_empty(), "{:?}", c.damage);
        assert_eq!(c.unchecked, 1);
    }
}
