//! Templates (`${expr}` in arguments and messages): parse and render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow::spec::template::Template;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Template::parse(&text) {
        Err(e) => assert!(e.offset <= text.len(), "offset {} past the end", e.offset),
        Ok(t) => {
            let ctx = json!({"inputs": {"user": "a@contoso.com"}, "steps": {}, "subject": "a", "obs": null});
            let _ = t.render(&ctx);
            let _ = t.render_text(&ctx);
            for (offset, _) in t.exprs_with_offsets() {
                assert!(offset <= text.len());
            }
        }
    }
});
