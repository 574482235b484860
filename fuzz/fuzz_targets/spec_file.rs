//! Any spec file as `portflow validate` reads it from disk (raw bytes: the
//! reader's UTF-8 and size checks too): a workflow, a run file of the fixture
//! workflow and CSV, or a schedule file of the fixture run file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow_fuzz::{fixture_dir, fixture_file, nesting_agrees, positions_inside};

fuzz_target!(|data: &[u8]| {
    let path = fixture_file("input.yaml", data);
    let text = String::from_utf8_lossy(data);
    nesting_agrees(&text);
    if let Err(e) = portflow::spec::validate_file(&path, &[fixture_dir().to_path_buf()]) {
        positions_inside(&e, "input.yaml", &text);
    }
});
