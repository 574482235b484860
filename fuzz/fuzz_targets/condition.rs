//! Conditions (`when`, `check.require`, `wait.until`): parse, then evaluate
//! against a context like the engine's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portflow::spec::expr::Expr;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Expr::parse(&text) {
        Err(e) => assert!(
            e.offset <= text.len().max(4096),
            "offset {} past the end",
            e.offset
        ),
        Ok(expr) => {
            let ctx = json!({
                "inputs": {"user": "a@contoso.com", "n": 3, "list": ["a", "b"]},
                "steps": {"inspect": {"output": {"line_uri": null, "xs": [{"sku": "A"}]}, "observed": {}}},
                "subject": "a@contoso.com",
                "obs": {"line_uri": "+14255550100"},
            });
            let _ = expr.eval(&ctx);
            let _ = expr.eval_bool(&ctx);
            for r in expr.var_refs() {
                assert!(r.offset < text.len(), "var ref past the end");
            }
            let _ = expr.input_literals();
        }
    }
});
