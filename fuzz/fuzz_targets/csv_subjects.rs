//! A CSV subject list of the fixture workflow, loaded through its run file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow_fuzz::{fixture_file, positions_inside};

fuzz_target!(|data: &[u8]| {
    fixture_file("fuzz.csv", data);
    let run = fixture_file(
        "fuzz-run.yaml",
        b"workflow: demo.yaml\nsubjects: {csv: fuzz.csv}\noperator: {address_mode: tenant_assigns}\n",
    );
    match portflow::spec::load_run(&run, &[]) {
        Ok(r) => assert!(!r.subjects.is_empty() && r.subjects.len() <= 100_000),
        Err(e) => positions_inside(&e, "fuzz.csv", &String::from_utf8_lossy(data)),
    }
});
