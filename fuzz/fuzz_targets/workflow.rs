//! Workflow text: parse and validate, as `validate` and `run` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow_fuzz::{nesting_agrees, positions_inside};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    nesting_agrees(&text);
    if let Err(e) = portflow::spec::parse_workflow(&text, "w.yaml") {
        positions_inside(&e, "w.yaml", &text);
    }
});
