//! Durability: SIGKILL the real binary at random instants of a 200-subject wave,
//! resume each time, and check the outcome equals an uninterrupted run.
//! Replay a failure with PORTFLOW_CRASH_SEED=<seed printed below>.

mod common;

use std::collections::BTreeMap;

use common::*;
use portflow::backend::sim::{SimConfig, SimTenant};
use portflow::backend::NumberType;
use portflow::clock::SystemClock;
use portflow::engine::instance::{EventKind, Status};
use portflow::store::keys::InstanceKey;
use portflow::store::records;
use portflow::store::sled_store::SledStore;

const USERS: u32 = 200;
const SEED: u64 = 7;

#[test]
fn sigkill_at_random_instants_then_resume_matches_an_uninterrupted_run() {
    let crash_seed = std::env::var("PORTFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ 0x5eed);
    eprintln!("crash seed: {crash_seed}");
    let mut rng = Rng(crash_seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, SEED, USERS, &csv);
    let faults = "  faults: {transient_rate: 0.02, throttle_rate: 0.02}\n";
    let run_file = write_run_file(tmp.path(), "wave.yaml", &csv, SEED, USERS, 600, faults);

    let kills = 10;
    let id = kill_and_resume(&state, &run_file, kills, &mut rng, (150, 1200));
    let done = run(portflow(&state).args(["--json", "resume", &id]));
    assert_eq!(
        done.status.code(),
        Some(0),
        "final resume: {}\n{}",
        stdout(&done),
        stderr(&done)
    );

    // Engine side: every instance succeeded once, histories gap-free and ordered.
    let store = SledStore::open(&state.join("engine")).expect("open engine store");
    let instances = records::list_instances(&store, &id).expect("instances");
    assert_eq!(instances.len(), USERS as usize);
    let mut reissued = 0;
    for inst in &instances {
        assert_eq!(
            inst.status,
            Status::Succeeded,
            "{}: {:?}",
            inst.subject,
            inst.status
        );
        let events = records::list_events(
            &store,
            &InstanceKey {
                run: id.clone(),
                idx: inst.idx,
            },
        )
        .expect("events");
        assert_eq!(
            events.len() as u32,
            inst.seq,
            "{}: snapshot seq matches history",
            inst.subject
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u32, "{}: gap in history", inst.subject);
            if i > 0 {
                assert!(
                    e.at >= events[i - 1].at,
                    "{}: history out of order",
                    inst.subject
                );
            }
        }
        let ends = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Succeeded))
            .count();
        assert_eq!(ends, 1, "{}: exactly one terminal event", inst.subject);
        reissued += events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ActionIntent { reissue: true, .. }))
            .count();
    }
    eprintln!("{kills} kills; {reissued} idempotent actions re-issued after reconciliation");
    drop(store);

    // Tenant side: no non-idempotent action twice; final state right for everyone.
    let sim = SimTenant::open(
        &state.join("sim").join(&id),
        &SimConfig::default(),
        std::sync::Arc::new(SystemClock),
    )
    .expect("open simulated tenant");
    let mut per_subject: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in sim.audit_log().expect("audit log") {
        if !e.op.info().idempotent && matches!(e.outcome, portflow::backend::sim::AuditOutcome::Ok)
        {
            *per_subject
                .entry((e.user.clone().unwrap_or_default(), e.op.to_string()))
                .or_insert(0) += 1;
        }
    }
    for ((user, op), n) in &per_subject {
        assert_eq!(*n, 1, "{op} ran {n} times for {user}");
    }
    for inst in &instances {
        let upn = inst.subject.clone();
        let number = inst.inputs["number"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let user = sim
            .user_state(&upn)
            .expect("user state")
            .expect("user exists");
        assert_eq!(
            user.cloud.line_uri.as_deref(),
            Some(number.as_str()),
            "{upn}: line URI"
        );
        assert!(user.cloud.enterprise_voice_enabled, "{upn}: EV on");
        assert_eq!(
            user.cloud.online_voice_routing_policy, None,
            "{upn}: DR routing policy removed"
        );
        assert_eq!(
            user.cloud.on_prem_line_uri, None,
            "{upn}: on-prem line cleared"
        );
        assert_eq!(user.ad_line_uri, None, "{upn}: AD line cleared");
        let n = sim
            .number_state(&number)
            .expect("number state")
            .expect("number exists");
        assert_eq!(
            n.number_type,
            NumberType::OperatorConnect,
            "{upn}: number is Operator Connect"
        );
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(user.cloud.id.as_str()),
            "{upn}: assigned to the user"
        );
        assert_eq!(n.activation_state, "Activated", "{upn}");
    }
}
