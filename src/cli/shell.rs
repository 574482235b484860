//! `portflow schema`, `completions` and `man`: what editors and shells read.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::args::Cli;
use super::error::CliError;
use super::print::write_out;
use crate::report::exit;
use crate::spec::schema::{schema_text, SchemaKind};

/// `portflow schema <kind> [--out FILE]`.
pub(super) fn schema(kind: SchemaKind, out: Option<&Path>) -> Result<u8, CliError> {
    let text = schema_text(kind);
    match out {
        Some(path) => write_out(path, text.as_bytes())?,
        None => stdout(text.as_bytes())?,
    }
    Ok(exit::OK)
}

/// `portflow completions <shell>`.
pub(super) fn completions(shell: crate::shell::Shell) -> Result<u8, CliError> {
    stdout(&crate::shell::completion_script(shell, Cli::command()))?;
    Ok(exit::OK)
}

/// `portflow man [--out DIR]`.
pub(super) fn man(out: Option<&Path>) -> Result<u8, CliError> {
    let Some(dir) = out else {
        let page = crate::shell::man_page(Cli::command())
            .map_err(|e| CliError::runtime(format!("cannot render the man page: {e}")))?;
        stdout(&page)?;
        return Ok(exit::OK);
    };
    let written = crate::shell::write_man_pages(Cli::command(), dir).map_err(|e| {
        CliError::from(
            crate::app::Error::input(format!(
                "cannot write man pages into {}: {e}",
                dir.display()
            ))
            .hint("choose a writable directory for --out"),
        )
    })?;
    eprintln!("wrote {} man pages into {}", written.len(), dir.display());
    Ok(exit::OK)
}

fn stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::runtime(format!("cannot write to stdout: {e}")))
}
