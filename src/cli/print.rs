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

/// Write a command's output to the file `--out` names.
pub(super) fn write_out(
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<(), super::error::CliError> {
    std::fs::write(path, bytes).map_err(|e| {
        super::error::CliError::from(
            crate::app::Error::input(format!("cannot write {}: {e}", path.display()))
                .hint("choose a writable path for --out"),
        )
    })
}
