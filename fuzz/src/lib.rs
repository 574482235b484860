//! What the fuzz targets check beyond "no panic, no hang" (libFuzzer's
//! `-timeout` turns a hang into a finding), and the files they share.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use portflow::spec::locate::PosMap;
use portflow::spec::source::yaml_text;
use portflow::spec::SpecError;

/// A workflow with every kind of input, for run files and CSV lists to use.
pub const WORKFLOW: &str = "\
name: demo
version: 1
subject: user
inputs:
  user: {type: upn}
  number: {type: e164}
  loc: {type: string, optional: true}
  mode: {type: string, optional: true, values: [a, b]}
steps:
  - id: inspect
    action: {op: get_user, args: {user: '${inputs.user}'}}
  - id: remove
    when: steps.inspect.output.line_uri != null && inputs.mode not in ['b']
    action:
      op: remove_number
      args: {user: '${inputs.user}', number: '${inputs.number}', number_type: DirectRouting}
    wait:
      observe: {op: get_user, args: {user: '${inputs.user}'}}
      until: obs.line_uri == null
      timeout: 24h
";

/// A CSV list for [`WORKFLOW`].
pub const CSV: &str =
    "user,number,loc,mode\na@contoso.com,+14255550100,,a\nb@contoso.com,+14255550101,loc-1,\n";

/// A run file of [`WORKFLOW`] and [`CSV`].
pub const RUN: &str = "workflow: demo.yaml\nsubjects: {csv: users.csv}\nconcurrency: 5\n";

/// A directory with `demo.yaml`, `users.csv` and `run.yaml`, made once per
/// process; targets write their input beside them.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portflow-fuzz-{}", std::process::id()));
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("demo.yaml"), WORKFLOW))
            .and_then(|()| std::fs::write(dir.join("users.csv"), CSV))
            .and_then(|()| std::fs::write(dir.join("run.yaml"), RUN));
        if let Err(e) = made {
            panic!("fixture {}: {e}", dir.display());
        }
        dir
    })
}

/// Write `data` to `name` in the fixture directory and return its path.
pub fn fixture_file(name: &str, data: &[u8]) -> PathBuf {
    let p = fixture_dir().join(name);
    if let Err(e) = std::fs::write(&p, data) {
        panic!("write {}: {e}", p.display());
    }
    p
}

/// Every diagnostic about the file named `suffix` points inside `text`: a
/// line that exists (or the one after the last), a column at most one past
/// the end of the longest line. Diagnostics about the whole file have 0:0.
pub fn positions_inside(e: &SpecError, suffix: &str, text: &str) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split(['\n', '\r']).collect();
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for d in e.diagnostics.iter().filter(|d| d.file.ends_with(suffix)) {
        if d.line == 0 {
            assert_eq!(d.col, 0, "{d}");
            continue;
        }
        assert!(
            d.line <= lines.len() + 1,
            "{d}: past the end ({} lines)",
            lines.len()
        );
        assert!(
            d.col >= 1 && d.col <= longest + 2,
            "{d}: column out of the text"
        );
    }
}

/// The two YAML parsers agree on nesting: when the position map accepts a
/// text (nesting at most 64 levels), libyaml never nests past serde's 128.
pub fn nesting_agrees(text: &str) {
    let Ok(text) = yaml_text(text, "f.yaml") else {
        return;
    };
    if PosMap::build(text).is_err() {
        return;
    }
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let msg = e.to_string();
        assert!(
            !msg.contains("recursion limit"),
            "the position map accepted what libyaml nests too deeply: {msg}"
        );
    }
}
