//! Typed reads and writes of runs, instances, events and timers.

use super::keys::{self, InstanceKey};
use super::{integrity, Batch, Store, StoreError};
use crate::clock::Timestamp;
use crate::engine::instance::{Event, Instance};
use crate::engine::machine::Transition;
use crate::engine::run::RunRecord;

/// Put `v` under `key`, sealed with its checksum.
fn put<T: serde::Serialize>(b: &mut Batch, key: Vec<u8>, v: &T) -> Result<(), StoreError> {
    let json = serde_json::to_vec(v).map_err(|e| StoreError::Encode {
        key: String::from_utf8_lossy(&key).into_owned(),
        reason: e.to_string(),
    })?;
    let sealed = integrity::seal(&key, &json);
    b.put(key, sealed);
    Ok(())
}

/// Decode a stored record, verifying its checksum (records written before
/// checksums are read unchecked).
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let (json, _) = integrity::open(key, bytes)?;
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Decode one event record: one event, or (schema 2) the array of one transition's events.
pub fn decode_events(key: &[u8], bytes: &[u8]) -> Result<Vec<Event>, StoreError> {
    let (json, _) = integrity::open(key, bytes)?;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    };
    if json.first() == Some(&b'[') {
        serde_json::from_slice(json).map_err(corrupt)
    } else {
        serde_json::from_slice::<Event>(json)
            .map(|e| vec![e])
            .map_err(corrupt)
    }
}

/// Decode a subject index value (the instance index, as text).
pub fn decode_subject_index(key: &[u8], bytes: &[u8]) -> Result<u32, StoreError> {
    let (text, _) = integrity::open(key, bytes)?;
    String::from_utf8_lossy(text)
        .parse()
        .map_err(|_| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "not an index".into(),
        })
}

/// Decode every record under `prefix`, in key order; stops at the first bad one.
fn decode_all<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    prefix: &[u8],
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    let mut err = None;
    store.scan_prefix(prefix, &mut |k, v| match decode(k, v) {
        Ok(r) => {
            out.push(r);
            true
        }
        Err(e) => {
            err = Some(e);
            false
        }
    })?;
    err.map_or(Ok(out), Err)
}

/// Add a run record to a batch.
pub fn put_run(b: &mut Batch, run: &RunRecord) -> Result<(), StoreError> {
    put(b, keys::run(&run.id), run)
}

/// Read one run.
pub fn get_run(store: &dyn Store, id: &str) -> Result<Option<RunRecord>, StoreError> {
    let key = keys::run(id);
    store.get(&key)?.map(|v| decode(&key, &v)).transpose()
}

/// Every run, oldest first.
pub fn list_runs(store: &dyn Store) -> Result<Vec<RunRecord>, StoreError> {
    decode_all(store, keys::RUN_PREFIX)
}

/// Ids of the stored runs that start with `prefix`, in id order (keys only:
/// no record is decoded).
pub fn run_ids_with_prefix(store: &dyn Store, prefix: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    store.scan_prefix(&keys::run(prefix), &mut |k, _| {
        if let Some(id) = k.strip_prefix(keys::RUN_PREFIX) {
            out.push(String::from_utf8_lossy(id).into_owned());
        }
        true
    })?;
    Ok(out)
}

/// Add a new instance (snapshot, subject index, timer) to a batch.
pub fn put_new_instance(b: &mut Batch, inst: &Instance) -> Result<(), StoreError> {
    let key = inst.key();
    put(b, keys::instance(&key), inst)?;
    let subject = keys::subject(&inst.run, &inst.subject);
    let idx = integrity::seal(&subject, inst.idx.to_string().as_bytes());
    b.put(subject, idx);
    if let Some(due) = inst.due {
        b.put(keys::timer_of(due.0, &key), Vec::new());
    }
    Ok(())
}

/// The events of one transition as one record under the first one's sequence
/// number: the event itself, or an array when there are several (one write
/// instead of one per event).
fn put_events(b: &mut Batch, key: &InstanceKey, events: &[Event]) -> Result<(), StoreError> {
    match events {
        [] => Ok(()),
        [one] => put(b, keys::event(key, one.seq), one),
        many => put(b, keys::event(key, many[0].seq), &many),
    }
}

/// Add the writes of one transition: events, snapshot, timer move.
pub fn put_transition(b: &mut Batch, old: &Instance, t: &Transition) -> Result<(), StoreError> {
    put_transition_from(b, old.due, t)
}

/// [`put_transition`] knowing only when the instance was due before it.
pub fn put_transition_from(
    b: &mut Batch,
    old_due: Option<Timestamp>,
    t: &Transition,
) -> Result<(), StoreError> {
    let key = t.next.key();
    put_events(b, &key, &t.events)?;
    put(b, keys::instance(&key), &t.next)?;
    let slot = |due: Option<Timestamp>| due.map(|d| keys::timer_slot(d.0));
    if slot(old_due) != slot(t.next.due) {
        if let Some(d) = old_due {
            b.delete(keys::timer_of(d.0, &key));
        }
        if let Some(d) = t.next.due {
            b.put(keys::timer_of(d.0, &key), Vec::new());
        }
    }
    Ok(())
}

/// Replace a snapshot outside the state machine (retry, admin repair), moving its timer.
pub fn put_replaced_instance(
    b: &mut Batch,
    old: &Instance,
    new: &Instance,
    events: &[Event],
) -> Result<(), StoreError> {
    let key = old.key();
    put_events(b, &key, events)?;
    put(b, keys::instance(&key), new)?;
    if let Some(d) = old.due {
        b.delete(keys::timer_of(d.0, &key));
    }
    if let Some(d) = new.due {
        b.put(keys::timer_of(d.0, &key), Vec::new());
    }
    Ok(())
}

/// Read one instance.
pub fn get_instance(store: &dyn Store, key: &InstanceKey) -> Result<Option<Instance>, StoreError> {
    let k = keys::instance(key);
    store.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

/// Every instance of a run, by index.
pub fn list_instances(store: &dyn Store, run: &str) -> Result<Vec<Instance>, StoreError> {
    decode_all(store, &keys::instance_prefix(run))
}

/// Index and status of every instance of a run, by index. Decodes only those two
/// fields of each snapshot (the rest is skipped, not built), so a restart with
/// 100,000 instances neither pays for nor keeps their inputs and outputs.
pub fn list_statuses(
    store: &dyn Store,
    run: &str,
) -> Result<Vec<(u32, crate::engine::instance::Status)>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Head {
        idx: u32,
        status: crate::engine::instance::Status,
    }
    let heads: Vec<Head> = decode_all(store, &keys::instance_prefix(run))?;
    Ok(heads.into_iter().map(|h| (h.idx, h.status)).collect())
}

/// What the out-of-service budget needs of one stored instance.
#[derive(Debug)]
pub struct OutageHead {
    /// Instance index.
    pub idx: u32,
    /// Its status.
    pub status: crate::engine::instance::Status,
    /// Out of service now.
    pub down: bool,
    /// Out of service now or before.
    pub went_down: bool,
}

/// Index, status and outage flags of every instance of a run, decoding no more.
pub fn list_outage_heads(store: &dyn Store, run: &str) -> Result<Vec<OutageHead>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Head {
        idx: u32,
        status: crate::engine::instance::Status,
        #[serde(default)]
        down: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        outages: Vec<serde::de::IgnoredAny>,
    }
    let heads: Vec<Head> = decode_all(store, &keys::instance_prefix(run))?;
    Ok(heads
        .into_iter()
        .map(|h| OutageHead {
            idx: h.idx,
            status: h.status,
            down: h.down.is_some(),
            went_down: h.down.is_some() || !h.outages.is_empty(),
        })
        .collect())
}

/// An instance's history, in order.
pub fn list_events(store: &dyn Store, key: &InstanceKey) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    let mut err = None;
    store.scan_prefix(
        &keys::event_prefix(key),
        &mut |k, v| match decode_events(k, v) {
            Ok(evs) => {
                out.extend(evs);
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        },
    )?;
    err.map_or(Ok(out), Err)
}

/// Index of a subject within a run.
pub fn find_subject(
    store: &dyn Store,
    run: &str,
    subject: &str,
) -> Result<Option<u32>, StoreError> {
    let k = keys::subject(run, subject);
    match store.get(&k)? {
        None => Ok(None),
        Some(v) => decode_subject_index(&k, &v).map(Some),
    }
}

/// Every timer of the given run, earliest first.
pub fn run_timers(store: &dyn Store, run: &str) -> Result<Vec<(Timestamp, u32)>, StoreError> {
    let mut out = Vec::new();
    store.scan_prefix(keys::TIMER_PREFIX, &mut |k, _| {
        if let Some((due, key)) = keys::parse_timer(k) {
            if key.run == run {
                out.push((Timestamp(due), key.idx));
            }
        }
        true
    })?;
    Ok(out)
}

/// Add a schedule to a batch.
pub fn put_schedule(b: &mut Batch, s: &crate::schedule::ScheduleRecord) -> Result<(), StoreError> {
    put(b, keys::schedule(&s.spec.name), s)
}

/// Read one schedule.
pub fn get_schedule(
    store: &dyn Store,
    name: &str,
) -> Result<Option<crate::schedule::ScheduleRecord>, StoreError> {
    let key = keys::schedule(name);
    store.get(&key)?.map(|v| decode(&key, &v)).transpose()
}

/// Every schedule, by name.
pub fn list_schedules(
    store: &dyn Store,
) -> Result<Vec<crate::schedule::ScheduleRecord>, StoreError> {
    decode_all(store, keys::SCHEDULE_PREFIX)
}

/// A simulated tenant some run has used: enough to recognise it again, so
/// that a tenant whose state vanished is never silently seeded anew.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantUse {
    /// Tenant directory name (`sim/<name>`).
    pub name: String,
    /// The tenant's id.
    pub tenant_id: String,
    /// When it was seeded (its virtual clock); a re-seeded tenant differs here.
    pub created_at: Timestamp,
    /// The run that used it first.
    pub first_run: String,
}

/// Add a tenant use record to a batch.
pub fn put_tenant_use(b: &mut Batch, u: &TenantUse) -> Result<(), StoreError> {
    put(b, keys::tenant_use(&u.name), u)
}

/// The use record of tenant `name`, if a run has used it.
pub fn get_tenant_use(store: &dyn Store, name: &str) -> Result<Option<TenantUse>, StoreError> {
    let key = keys::tenant_use(name);
    store.get(&key)?.map(|v| decode(&key, &v)).transpose()
}

/// Every tenant use record, by name.
pub fn list_tenant_uses(store: &dyn Store) -> Result<Vec<TenantUse>, StoreError> {
    decode_all(store, keys::TENANT_USE_PREFIX)
}

/// Deletes of everything stored under `run` except its run record: what a crash
/// part-way through creating a run leaves behind.
pub fn delete_run_data(store: &dyn Store, run: &str) -> Result<Batch, StoreError> {
    let mut b = Batch::default();
    let mut keys_of = |prefix: &[u8]| {
        store.scan_prefix(prefix, &mut |k, _| {
            b.delete(k.to_vec());
            true
        })
    };
    keys_of(&keys::instance_prefix(run))?;
    keys_of(&keys::subject_prefix(run))?;
    keys_of(format!("e/{run}/").as_bytes())?;
    for (due, idx) in run_timers(store, run)? {
        b.delete(keys::timer(
            due.0,
            &InstanceKey {
                run: run.to_string(),
                idx,
            },
        ));
    }
    Ok(b)
}

/// Visit a run's instances in index order without holding them all.
pub fn for_each_instance(
    store: &dyn Store,
    run: &str,
    f: &mut dyn FnMut(Instance),
) -> Result<(), StoreError> {
    let mut err = None;
    store.scan_prefix(
        &keys::instance_prefix(run),
        &mut |k, v| match decode(k, v) {
            Ok(inst) => {
                f(inst);
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        },
    )?;
    err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::instance::EventKind;
    use crate::store::memory::MemoryStore;

    fn ev(seq: u32) -> Event {
        Event {
            seq,
            at: Timestamp(seq.into()),
            kind: EventKind::Started,
        }
    }

    #[test]
    fn a_due_moving_within_its_timer_slot_writes_no_timer() {
        let inst = Instance::new(
            "r",
            1,
            "a@b.c".into(),
            Default::default(),
            Timestamp(5_000_100),
        );
        let timer_ops = |due: i64| {
            let mut next = inst.clone();
            next.due = Some(Timestamp(due));
            let t = crate::engine::machine::Transition {
                next,
                events: Vec::new(),
                effect: None,
                persist: crate::engine::machine::Persist::Lazy,
                rule: "test",
            };
            let mut b = Batch::default();
            put_transition(&mut b, &inst, &t).expect("our records encode");
            b.ops
                .into_iter()
                .filter(|(k, _)| k.starts_with(keys::TIMER_PREFIX))
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.is_some()))
                .collect::<Vec<_>>()
        };
        assert!(timer_ops(5_000_900).is_empty(), "same slot: key unchanged");
        let moved = timer_ops(5_001_000);
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert!(moved[0].0.contains("/00000000000005000000/") && !moved[0].1);
        assert!(moved[1].0.contains("/00000000000005001000/") && moved[1].1);
    }

    #[test]
    fn events_read_back_from_single_and_grouped_records() {
        let store = MemoryStore::new();
        let key = InstanceKey {
            run: "r".into(),
            idx: 3,
        };
        let mut b = Batch::default();
        // Schema 1: one record per event, unsealed; schema 2: one record per
        // transition; schema 3: sealed.
        b.put(
            keys::event(&key, 0),
            serde_json::to_vec(&ev(0)).unwrap_or_default(),
        );
        put_events(&mut b, &key, &[ev(1), ev(2)]).expect("our records encode");
        put_events(&mut b, &key, &[ev(3)]).expect("our records encode");
        put_events(&mut b, &key, &[]).expect("our records encode");
        assert_eq!(b.ops.len(), 3);
        assert!(store.apply(&b).is_ok());
        let seqs: Vec<u32> = list_events(&store, &key)
            .unwrap_or_default()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
    }
}
