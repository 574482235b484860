//! Durations as written in workflows, run files and schedules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow::schedule::Window;
use portflow::spec::model::parse_duration;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_duration(&text);
    if let Ok(w) = Window::parse("0 22 * * *", &text, "Europe/Berlin") {
        assert!(!w.duration.is_zero() && w.duration <= portflow::spec::limits::MAX_SPAN);
    }
    // Through serde, where a wait's timeout is read.
    let yaml = format!("timeout: {text:?}\n");
    let _ = serde_yaml::from_str::<serde_yaml::Value>(&yaml);
});
