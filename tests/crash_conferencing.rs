//! Durability of the non-idempotent operations: SIGKILL the real binary at
//! random instants of a 200-subject run of send-conferencing-info chained with
//! reset-conference-id (`then:`), under 2 % transient faults and 2 % throttling,
//! resume each time, and check that no user ever got a message twice.
//! Replay a failure with PORTFLOW_CRASH_SEED=<seed printed below>.

mod common;

use std::collections::BTreeMap;

use common::*;
use portflow::backend::sim::{tags, Profile};
use portflow::engine::instance::{EventKind, Status};

const USERS: u32 = 200;
const SEED: u64 = 17;
const KILLS: u32 = 12;

#[test]
fn sigkill_during_conferencing_mails_and_resets_never_sends_twice() {
    // Two workers and resets visible after 20 minutes to 2 hours: the sends and
    // resets are spread over the first seconds, the run lasts about 20 s.
    let (_tmp, state, run_file, mut rng) = lab(
        0xc0f3,
        USERS,
        "latency: {min: 20m, typical_max: 2h, tail_rate: 0}\n  faults: {transient_rate: 0.02, throttle_rate: 0.02}",
        "then: [reset-conference-id]\nconcurrency: 2\napprovals: [approve-reset]\ntime_scale: 400\n",
    );
    let users: Vec<String> = (1..=USERS)
        .map(portflow::backend::sim::SimTenant::upn)
        .collect();
    let cfg = sim_cfg(Profile::DirectRouting, SEED, USERS);
    let (refused, conference_ids) = {
        let (_dir, probe) = probe_tenant(&cfg);
        let mut refused = probe.users_tagged(tags::CONF_THIRD_PARTY).expect("tags");
        refused.extend(probe.users_tagged(tags::CONF_NONE).expect("tags"));
        let ids: BTreeMap<String, Option<String>> = users
            .iter()
            .map(|u| {
                let st = probe.user_state(u).expect("state").expect("user");
                (u.clone(), st.conferencing.and_then(|c| c.conference_id))
            })
            .collect();
        (refused, ids)
    };
    let kills = KILLS;
    let id = kill_and_resume(&state, &run_file, kills, &mut rng, (100, 1000));
    let (code, doc) = pf_json(&state, &["resume", &id]);
    assert_eq!(doc["end"], "Finished", "{doc}");
    assert_eq!(code, 3, "the refused subjects make exit 3: {doc}");

    let steps = step_ids(&state, &id);
    let engine = instances_with_events(&state, &id);
    assert_eq!(engine.len(), USERS as usize);
    let sim = open_run_tenant(&state, &id, &id, &cfg);
    let mut per_user: BTreeMap<(String, String), usize> = BTreeMap::new();
    for m in sim.outbox().expect("outbox") {
        *per_user
            .entry((m.user.clone(), m.kind.clone()))
            .or_insert(0) += 1;
    }
    let mails = |u: &str, kind: &str| {
        per_user
            .get(&(u.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let (mut succeeded, mut attention, mut reconciled) = (0, 0, 0);
    for (u, (inst, events)) in &engine {
        assert!(
            mails(u, "conferencing_info") <= 1,
            "{u}: conferencing e-mail sent twice"
        );
        assert!(
            mails(u, "conference_id_reset") <= 1,
            "{u}: conference id reset twice"
        );
        assert_eq!(
            events.len() as u32,
            inst.seq,
            "{u}: snapshot seq matches history"
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u32, "{u}: gap in history");
        }
        reconciled += events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Reconciled { .. }))
            .count();
        match &inst.status {
            Status::Succeeded => {
                succeeded += 1;
                assert_eq!(mails(u, "conferencing_info"), 1, "{u}");
                assert_eq!(mails(u, "conference_id_reset"), 1, "{u}");
                let st = sim.user_state(u).expect("state").expect("user");
                let now = st.conferencing.and_then(|c| c.conference_id);
                assert!(now.is_some() && now != conference_ids[u], "{u}: id changed");
            }
            Status::Failed { step, error } => {
                assert!(
                    steps[*step].contains("check") && error.starts_with("refused:"),
                    "{u}: failed other than by a check refusal at {}: {error}",
                    steps[*step]
                );
                assert!(
                    refused.contains(u),
                    "{u}: refused but has Microsoft conferencing"
                );
                assert_eq!(
                    mails(u, "conferencing_info") + mails(u, "conference_id_reset"),
                    0,
                    "{u}"
                );
            }
            Status::NeedsAttention { step, reason, .. } => {
                attention += 1;
                assert!(
                    reason.contains("may or may not have taken effect"),
                    "{u}: needs attention at {} for another reason: {reason}",
                    steps[*step]
                );
                assert!(
                    steps[*step] == "send-conferencing-email" || steps[*step] == "reset",
                    "{u}: in doubt at {}",
                    steps[*step]
                );
            }
            other => panic!("{u}: unexpected final state {other:?}"),
        }
    }
    for u in &refused {
        assert!(
            matches!(engine[u].0.status, Status::Failed { .. }),
            "{u}: third-party or no conferencing must be refused"
        );
    }
    eprintln!(
        "{kills} kills; {succeeded} succeeded, {} refused, {attention} need attention (a send or reset in doubt), {reconciled} reconciled after a restart",
        refused.len()
    );
}

/// A rate-limited wave: most workers wait for the limiter at any instant. A
/// kill must leave needs-attention only for a call really in flight (at most
/// one per kill at this rate), never for one still waiting its turn.
#[test]
fn sigkill_while_calls_wait_for_the_rate_limiter_leaves_them_not_in_doubt() {
    let (_tmp, state, run_file, mut rng) = lab(
        0x1a7e,
        80,
        "latency: {min: 1s, typical_max: 2s, tail_rate: 0}",
        "concurrency: 20\nrate_limit: 40\ntime_scale: 1\n",
    );
    let kills = 4;
    let id = kill_and_resume(&state, &run_file, kills, &mut rng, (300, 900));
    let (_, doc) = pf_json(&state, &["resume", &id]);
    assert_eq!(doc["end"], "Finished", "{doc}");
    let engine = instances_with_events(&state, &id);
    let cfg = sim_cfg(Profile::DirectRouting, SEED, 80);
    let sim = open_run_tenant(&state, &id, &id, &cfg);
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for m in sim.outbox().expect("outbox") {
        *sent.entry(m.user.clone()).or_insert(0) += 1;
    }
    let attention = engine
        .values()
        .filter(|(i, _)| matches!(i.status, Status::NeedsAttention { .. }))
        .count();
    eprintln!("{kills} kills; {attention} need attention");
    assert!(
        sent.values().all(|n| *n <= 1),
        "an e-mail sent twice: {sent:?}"
    );
    assert!(
        attention <= kills as usize,
        "{attention} in doubt after {kills} kills: intents were recorded for calls waiting their turn"
    );
}

/// Hundreds of actions in flight share each fsync of the simulated tenant
/// (group commit). A kill at any instant leaves its audit log and outbox
/// without a gap, and both stores pass `verify`.
#[test]
fn sigkill_amid_hundreds_of_concurrent_actions_leaves_stores_that_verify() {
    let (_tmp, state, run_file, mut rng) = lab(
        0x6c0d,
        600,
        "latency: {min: 20m, typical_max: 2h, tail_rate: 0}",
        "then: [reset-conference-id]\nconcurrency: 600\napprovals: [approve-reset]\ntime_scale: 400\n",
    );
    let mut verified = 0;
    // Kills from 1 s on: after the tenant is seeded (the sends and resets of
    // 600 subjects start at once), before the resets' waits end (~18 s).
    let id = kill_and_resume_checking(&state, &run_file, 4, &mut rng, (1000, 2500), |k| {
        let (code, doc) = pf_json(&state, &["verify"]);
        assert_eq!(code, 0, "verify after kill {k}: {doc}");
        verified += 1;
    });
    assert_eq!(verified, 4);
    let (_, doc) = pf_json(&state, &["resume", &id]);
    assert_eq!(doc["end"], "Finished", "{doc}");
    let cfg = sim_cfg(Profile::DirectRouting, SEED, 600);
    let sim = open_run_tenant(&state, &id, &id, &cfg);
    let numbered_from_one = |seqs: Vec<u64>| seqs.iter().copied().eq(1..=seqs.len() as u64);
    let audit = sim.audit_log().expect("audit");
    assert!(
        numbered_from_one(audit.iter().map(|e| e.seq).collect()),
        "audit gap"
    );
    let outbox = sim.outbox().expect("outbox");
    assert!(
        outbox.len() > 100,
        "{} messages: the wave did not run",
        outbox.len()
    );
    assert!(
        numbered_from_one(outbox.iter().map(|m| m.seq).collect()),
        "outbox gap"
    );
}

/// A scratch directory with a CSV of seeded users `1..=users` and a run file of
/// send-conferencing-info on a simulated tenant (`backend` lines added to its
/// `backend:` block, `rest` appended), and the crash RNG (seeded from
/// PORTFLOW_CRASH_SEED, else from the process id and `salt`).
fn lab(
    salt: u64,
    users: u32,
    backend: &str,
    rest: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Rng,
) {
    let crash_seed = std::env::var("PORTFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ salt);
    eprintln!("crash seed: {crash_seed} (PORTFLOW_CRASH_SEED={crash_seed} replays it)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("users.csv");
    let upns: Vec<String> = (1..=users)
        .map(portflow::backend::sim::SimTenant::upn)
        .collect();
    write(&csv, &format!("user\n{}\n", upns.join("\n")));
    let run_file = tmp.path().join("conf.yaml");
    write(
        &run_file,
        &format!(
            "workflow: send-conferencing-info\n\
             backend:\n  kind: sim\n  seed: {SEED}\n  users: {users}\n  {backend}\n\
             subjects: {{csv: {}}}\n{rest}",
            csv.display()
        ),
    );
    (tmp, state, run_file, Rng(crash_seed))
}
