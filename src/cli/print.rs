//! Writing to stdout and stderr.

/// Print JSON to stdout.
pub(super) fn print_json(v: &serde_json::Value) {
    print!("{}", crate::app::json_text(v));
}

/// Spec warnings on stderr, one line each; they never change the exit code.
pub(super) fn print_warnings(warnings: &[crate::spec::Diagnostic]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}
