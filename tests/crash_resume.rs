//! Durability: SIGKILL the real binary at random instants of a 200-subject wave,
//! resume each time, and check the outcome equals an uninterrupted run.
//! Replay a failure with PORTFLOW_CRASH_SEED=<seed printed below>.

mod common;

use common::*;

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

    let reissued = assert_dr_to_oc_done(&state, &id, &state.join("sim").join(&id), USERS as usize);
    eprintln!("{kills} kills; {reissued} idempotent actions re-issued after reconciliation");
}
