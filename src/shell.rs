//! Shell conventions generated from the command line's clap definitions:
//! completion scripts (`portflow completions`) and man pages (`portflow man`).
//! Takes the `clap::Command` from the caller, so it knows nothing of the CLI.

use std::io;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// The completion script of `shell` for `cmd`.
pub fn completion_script(shell: Shell, mut cmd: clap::Command) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    // Into memory: clap_complete panics when its writer fails.
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// The man page of `cmd` itself (`portflow.1`), listing its subcommands.
pub fn man_page(cmd: clap::Command) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(prepare(cmd)).render(&mut out)?;
    Ok(out)
}

/// Write `portflow.1` and one page per visible subcommand, nested ones
/// included (`portflow-run.1`, `portflow-schedule-add.1`), into `dir`, which
/// is created if missing. Returns the files written, the main page first.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fn write(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
        let man = clap_mangen::Man::new(cmd.clone());
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        std::fs::write(&path, text)?;
        written.push(path);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub, dir, written)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write(&prepare(cmd), dir, &mut written)?;
    Ok(written)
}

/// Built, so subcommands carry their full names (`portflow-schedule-add`);
/// without clap's `help` subcommand, which needs no page.
fn prepare(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}
