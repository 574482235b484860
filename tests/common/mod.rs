//! Helpers shared by the integration tests: run the real binary in a temp dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portflow")
}

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `portflow` command with `--state` set and the repository's workflows on the path.
pub fn portflow(state: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("--state").arg(state);
    c.arg("--workflows").arg(repo().join("workflows"));
    c.env_remove("PORTFLOW_STATE");
    c.env("PORTFLOW_LOG", "error");
    c
}

/// Run to completion and capture.
pub fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse stdout as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        ),
    }
}

/// Write the subjects of a seeded simulated tenant (`users` users from `seed`) as CSV.
pub fn export_subjects(state: &Path, seed: u64, users: u32, csv: &Path) {
    let o = run(portflow(state)
        .args(["sim", "init", "--name", "subjects-source", "--seed"])
        .arg(seed.to_string())
        .arg("--users")
        .arg(users.to_string())
        .arg("--export")
        .arg(csv));
    assert!(o.status.success(), "sim init failed: {}", stderr(&o));
}

/// Write a DR → OC run file for a simulated tenant.
pub fn write_run_file(
    dir: &Path,
    name: &str,
    csv: &Path,
    seed: u64,
    users: u32,
    scale: u32,
    extra_backend: &str,
) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "workflow: direct-routing-to-operator-connect\n\
         label: test wave\n\
         backend:\n  kind: sim\n  seed: {seed}\n  users: {users}\n  latency: {{min: 30s, typical_max: 10m, tail_rate: 0}}\n  dirsync_interval: 10m\n  operator_upload_delay: {{min: 15m, max: 90m}}\n{extra_backend}\
         subjects: {{csv: {}}}\n\
         concurrency: 50\n\
         approvals: [operator-coordinated]\n\
         time_scale: {scale}\n",
        csv.display()
    );
    if let Err(e) = std::fs::write(&path, text) {
        panic!("write {}: {e}", path.display());
    }
    path
}

/// Id of the only run in a state directory, if any.
pub fn only_run_id(state: &Path) -> Option<String> {
    let o = run(portflow(state).args(["--json", "status"]));
    if !o.status.success() {
        return None;
    }
    let v = json(&o);
    v["runs"].as_array()?.first()?["run"]
        .as_str()
        .map(str::to_string)
}

/// A small deterministic PRNG for picking kill instants (seed printed for replay).
pub struct Rng(pub u64);

impl Rng {
    /// Next value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + z % (hi - lo).max(1)
    }
}
