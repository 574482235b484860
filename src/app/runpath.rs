//! Which files the daemon reads as run files for its API (`POST /api/runs`,
//! `POST /api/cli/plan`, schedules), and what its errors may say about them.
//!
//! The daemon reads files as its own user, for whoever holds the token: it
//! must not quote a file that is not a run file (`/etc/passwd` in a YAML
//! error). The rule: an absolute path ending in `.yaml` or `.yml`, naming a
//! regular file that is a YAML mapping with `workflow` and `subjects`. Only
//! then are its problems reported, and only those in the run file itself:
//! for the files it refers to (its workflow file, its CSV) the answer gives
//! the place, not the message. The CLI loads run files itself first, so its
//! users still see every message.

use std::path::{Path, PathBuf};

use crate::spec::{self, LoadedRun, SpecError};

/// What the rule is, for hints and errors.
const RULE: &str = "the daemon reads run files by absolute path, ending in .yaml or .yml";

/// Why the daemon will not read a path as a run file. Messages name the path,
/// never anything read from it.
#[derive(Debug, thiserror::Error)]
pub enum RunPathError {
    /// A relative path (the daemon's working directory is not the caller's).
    #[error("{}: not an absolute path ({RULE})", .0.display())]
    NotAbsolute(PathBuf),
    /// Another extension.
    #[error("{}: not a .yaml or .yml file ({RULE})", .0.display())]
    NotYaml(PathBuf),
    /// It cannot be read (missing, no permission).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory, a device, a FIFO.
    #[error("{}: not a regular file", .0.display())]
    NotFile(PathBuf),
    /// A run file with problems: its own diagnostics, and only the place of
    /// those in other files.
    #[error("{message}")]
    Problems {
        /// One line per diagnostic.
        message: String,
        /// What to do when some were withheld.
        hint: Option<String>,
    },
    /// Not a mapping with `workflow` and `subjects` (or not text at all).
    #[error("{}: not a run file (a run file is a YAML mapping with `workflow` and `subjects`)", .0.display())]
    NotRunFile(PathBuf),
}

/// Check the form of a path the API is given as a run file: absolute, `.yaml`
/// or `.yml`. Schedules are checked with this when stored, and read with
/// [`load`] at each fire.
pub fn check(path: &Path) -> Result<(), RunPathError> {
    if !path.is_absolute() {
        return Err(RunPathError::NotAbsolute(path.to_path_buf()));
    }
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if !yaml {
        return Err(RunPathError::NotYaml(path.to_path_buf()));
    }
    Ok(())
}

/// The text of the run file at `path`, if it passes the rule.
fn read(path: &Path) -> Result<String, RunPathError> {
    check(path)?;
    let read_err = |source| RunPathError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Before reading: a FIFO or a device would block or never end.
    if !std::fs::metadata(path).map_err(read_err)?.is_file() {
        return Err(RunPathError::NotFile(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    match String::from_utf8(bytes) {
        Ok(text) if spec::is_run_file_text(&text) => Ok(text),
        _ => Err(RunPathError::NotRunFile(path.to_path_buf())),
    }
}

/// Load a run file for the API: [`check`] and the run file's shape first, then
/// the usual load, with what other files say withheld (see the module docs).
pub fn load(path: &Path, search_dirs: &[PathBuf]) -> Result<LoadedRun, RunPathError> {
    let text = read(path)?;
    spec::load_run_text(path, text, search_dirs).map_err(|e| withhold_others(path, &e))
}

/// `e` as an error for the API: diagnostics in the run file as they are, those
/// in any other file reduced to their place.
fn withhold_others(path: &Path, e: &SpecError) -> RunPathError {
    let origin = path.display().to_string();
    let mut withheld = false;
    let lines: Vec<String> = e
        .diagnostics
        .iter()
        .map(|d| {
            if d.file == origin {
                return d.to_string();
            }
            withheld = true;
            let place = if d.line == 0 {
                d.file.clone()
            } else {
                format!("{}:{}:{}", d.file, d.line, d.col)
            };
            format!("{place}: a problem in a file the run file uses (not shown through the API)")
        })
        .collect();
    RunPathError::Problems {
        message: lines.join("\n"),
        hint: withheld.then(|| {
            format!(
                "run `portflow validate {origin}` as a user who can read those files to see the problems"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_yaml_paths_pass_the_form_check() {
        assert!(check(Path::new("/srv/waves/w1.yaml")).is_ok());
        assert!(check(Path::new("/srv/waves/w1.YML")).is_ok());
        assert!(matches!(
            check(Path::new("w1.yaml")),
            Err(RunPathError::NotAbsolute(_))
        ));
        for p in ["/etc/passwd", "/srv/w1.yaml.bak", "/srv/", "/srv/.yaml.txt"] {
            assert!(
                matches!(check(Path::new(p)), Err(RunPathError::NotYaml(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn files_that_are_not_run_files_are_refused_without_their_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("scalar.yaml", "root:x:0:0:root:/root:/bin/bash\n"),
            ("map.yaml", "db_password: hunter2\n"),
            ("list.yml", "- hunter2\n"),
            ("broken.yaml", "a: [hunter2\n"),
            ("half.yaml", "workflow: hunter2\n"),
        ];
        for (name, text) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            let e = load(&p, &[]).expect_err("refused");
            assert!(e.to_string().contains("not a run file"), "{name}: {e}");
            assert!(!e.to_string().contains("hunter2") && !e.to_string().contains("root:x"));
        }
        let e = load(dir.path(), &[]).expect_err("a directory");
        assert!(e.to_string().contains("not a .yaml"), "{e}");
        let sub = dir.path().join("d.yaml");
        std::fs::create_dir(&sub).expect("mkdir");
        let e = load(&sub, &[]).expect_err("a directory");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn problems_in_other_files_give_their_place_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("users.csv");
        std::fs::write(&csv, "hunter2,other\n").expect("write");
        let rf = dir.path().join("run.yaml");
        std::fs::write(
            &rf,
            format!(
                "workflow: assign-emergency-location\nconcurrency: 0\nsubjects: {{csv: {}}}\n",
                csv.display()
            ),
        )
        .expect("write");
        let e = load(&rf, &[]).expect_err("invalid");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "{}:2:14: concurrency must be between 1 and 10000",
                rf.display()
            )),
            "{e}"
        );
        assert!(
            e.to_string().contains(&format!(
                "{}:1:1: a problem in a file the run file uses",
                csv.display()
            )),
            "{e}"
        );
        assert!(crate::app::Error::from(e)
            .hint_text()
            .is_some_and(|h| h.contains("portflow validate")));
    }
}
