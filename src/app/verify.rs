//! `verify`: check a state directory without changing it.
//!
//! Opening a sled store writes to it (a new snapshot; a recovery that zeroes
//! what it takes for a torn end), so each store is copied, under sled's own
//! lock, into a scratch directory (`$TMPDIR`) and the copy is opened and read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{json_text, App, Error, Result};
use crate::backend::sim::{SimConfig, SimError, SimTenant};
use crate::clock::SystemClock;
use crate::report::exit;
use crate::store::records::TenantUse;
use crate::store::sled_store::{self, SledStore};
use crate::store::verify::{check_engine, Finding};
use crate::store::StoreError;

/// Damage lines shown per store (all of them with `--json`).
const SHOWN: usize = 20;

/// What was found in one store.
#[derive(Debug, Default)]
struct Report {
    /// `engine` or `sim/<name>`.
    name: String,
    path: PathBuf,
    records: u64,
    unchecked: u64,
    /// Counts worth printing (runs, instances, events).
    summary: Vec<(&'static str, u64)>,
    damage: Vec<Finding>,
    notes: Vec<Finding>,
    /// A simulated tenant's identity, to match it with the engine's use records.
    identity: Option<(String, crate::clock::Timestamp)>,
}

impl Report {
    fn new(name: String, path: &Path) -> Report {
        Report {
            name,
            path: path.to_path_buf(),
            ..Report::default()
        }
    }

    fn damage(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.damage.push(Finding {
            key: key.into(),
            problem: problem.into(),
        });
    }

    fn note(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.notes.push(Finding {
            key: key.into(),
            problem: problem.into(),
        });
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "store": self.name,
            "path": self.path,
            "ok": self.damage.is_empty(),
            "records": self.records,
            "unchecked": self.unchecked,
            "damage": self.damage,
            "notes": self.notes,
        });
        for (k, n) in &self.summary {
            v[*k] = json!(n);
        }
        v
    }
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let base = std::env::temp_dir();
        // Named by pid and the first free number (no clock read outside the clock module).
        let pid = std::process::id();
        let dir = (0u32..)
            .map(|n| base.join(format!("portflow-verify-{pid}-{n}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| base.join(format!("portflow-verify-{pid}")));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::runtime(format!(
                "cannot create a scratch directory {}: {e}",
                dir.display()
            ))
            .hint("set TMPDIR to a directory with room for a copy of the state directory")
        })?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copy the store in `dir` into the scratch directory, holding sled's lock so
/// no process writes meanwhile; report its snapshot files on the way.
/// `Ok(None)`: there is no store there.
fn copy_store(dir: &Path, scratch: &Scratch, report: &mut Report) -> Result<Option<PathBuf>> {
    let lock = match sled_store::lock_store(dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(None),
        Err(e @ StoreError::Locked(_)) => {
            return Err(Error::from(e).hint(
                "stop the daemon or the run using it first, or verify a copy: \
                 `portflow backup DIR`, then `portflow --state DIR verify`",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    match sled_store::snapshot_files(dir) {
        Ok(snaps) => {
            for s in snaps.iter().filter(|s| !s.valid) {
                let file = s.path.display().to_string();
                if s.generating {
                    report.note(
                        file,
                        format!(
                            "an unfinished sled snapshot ({} bytes) left by an interrupted open or \
                             a full disk: the next open sets it aside; harmless",
                            s.len
                        ),
                    );
                } else {
                    report.damage(file, "sled's snapshot file is damaged (its checksum fails)");
                }
            }
        }
        Err(e) => report.damage(dir.display().to_string(), format!("cannot list it: {e}")),
    }
    let copy = scratch.0.join(report.name.replace('/', "_"));
    copy_tree(dir, &copy).map_err(|e| {
        Error::runtime(format!(
            "cannot copy {} to {} to check it: {e}",
            dir.display(),
            copy.display()
        ))
        .hint("set TMPDIR to a directory with room for a copy of the state directory")
    })?;
    drop(lock);
    Ok(Some(copy))
}

fn verify_engine(dir: &Path, scratch: &Scratch) -> Result<(Report, Vec<TenantUse>)> {
    let mut r = Report::new("engine".into(), dir);
    let Some(copy) = copy_store(dir, scratch, &mut r)? else {
        r.note(
            dir.display().to_string(),
            "no engine store (nothing has run here yet)",
        );
        return Ok((r, Vec::new()));
    };
    let store = match SledStore::open(&copy) {
        Ok(s) => s,
        Err(e) => {
            r.damage(dir.display().to_string(), open_failure(&e, &copy, dir));
            return Ok((r, Vec::new()));
        }
    };
    let c = check_engine(&store);
    r.records = c.records;
    r.unchecked = c.unchecked;
    r.summary = vec![
        ("runs", c.runs as u64),
        ("instances", c.instances as u64),
        ("events", c.events),
    ];
    r.damage.extend(c.damage);
    r.notes.extend(c.notes);
    Ok((r, c.tenants))
}

fn verify_sim(name: &str, dir: &Path, scratch: &Scratch) -> Result<Report> {
    let mut r = Report::new(format!("sim/{name}"), dir);
    let Some(copy) = copy_store(dir, scratch, &mut r)? else {
        r.damage(
            dir.display().to_string(),
            "no store in this tenant directory",
        );
        return Ok(r);
    };
    let opened = SimTenant::open_existing(&copy, &SimConfig::default(), Arc::new(SystemClock));
    let sim = match opened {
        Ok(s) => s,
        Err(SimError::Missing { why, .. }) => {
            r.damage(
                dir.display().to_string(),
                format!("the tenant's store {why}"),
            );
            return Ok(r);
        }
        Err(SimError::Store(e)) => {
            r.damage(dir.display().to_string(), open_failure(&e, &copy, dir));
            return Ok(r);
        }
        Err(e) => {
            let text = e
                .to_string()
                .replace(&copy.display().to_string(), &dir.display().to_string());
            r.damage(dir.display().to_string(), text);
            return Ok(r);
        }
    };
    let c = sim.check_records();
    r.records = c.records;
    r.unchecked = c.unchecked;
    r.identity = Some((sim.tenant_id().to_string(), sim.created_at()));
    for (k, p) in c.damage {
        r.damage(k, p);
    }
    for (k, p) in c.notes {
        r.note(k, p);
    }
    Ok(r)
}

/// Why a store would not open, naming the real store rather than the scratch
/// copy (the finding already names the directory).
fn open_failure(e: &StoreError, copy: &Path, dir: &Path) -> String {
    let text = match e.root() {
        StoreError::Damaged { damage, .. } => format!("damaged: {damage}"),
        other => other.to_string(),
    };
    text.replace(&copy.display().to_string(), &dir.display().to_string())
}

/// Check the state directory: what `verify` prints, and its exit code (0 when
/// every store is sound, 3 when something is damaged).
pub fn verify(app: &App) -> Result<(String, u8)> {
    if !app.state.is_dir() {
        return Err(
            Error::input(format!("no state directory at {}", app.state.display()))
                .hint("point --state (or PORTFLOW_STATE) at it"),
        );
    }
    let scratch = Scratch::new()?;
    let (engine, uses) = verify_engine(&app.engine_dir(), &scratch)?;
    let mut reports = vec![engine];
    let names = super::backends::sim_tenant_names(app);
    for name in &names {
        reports.push(verify_sim(
            name,
            &app.state.join("sim").join(name),
            &scratch,
        )?);
    }
    // Every tenant a run has used must be there, and be the same tenant.
    for used in &uses {
        let label = format!("sim/{}", used.name);
        let why = match reports.iter().find(|r| r.name == label) {
            None => Some("is gone".to_string()),
            Some(r) => match &r.identity {
                Some((id, created)) if *id != used.tenant_id || *created != used.created_at => {
                    Some(format!(
                        "is another tenant now (seeded {}, the one used was seeded {})",
                        created.rfc3339(),
                        used.created_at.rfc3339()
                    ))
                }
                _ => None,
            },
        };
        if let Some(why) = why {
            let dir = app.state.join("sim").join(&used.name);
            let problem = format!("{why}; run {} used it", used.first_run);
            match reports.iter_mut().find(|r| r.name == label) {
                Some(r) => r.damage(dir.display().to_string(), problem),
                None => {
                    let mut r = Report::new(label, &dir);
                    r.damage(dir.display().to_string(), problem);
                    reports.push(r);
                }
            }
        }
    }
    let damaged = reports.iter().filter(|r| !r.damage.is_empty()).count();
    let out = if app.json {
        json_text(&json!({
            "state": app.state,
            "ok": damaged == 0,
            "stores": reports.iter().map(Report::to_json).collect::<Vec<_>>(),
        }))
    } else {
        let mut out = format!("state directory {}\n", app.state.display());
        for r in &reports {
            out.push_str(&render(r));
        }
        if damaged == 0 {
            out.push_str(&format!(
                "ok: {} store(s), nothing damaged\n",
                reports.len()
            ));
        } else {
            out.push_str(&format!(
                "DAMAGED: {damaged} of {} store(s); nothing was changed\n",
                reports.len()
            ));
            out.push_str(&format!("what to do: {}\n", super::error::RESTORE_HINT));
        }
        out
    };
    Ok((out, if damaged == 0 { exit::OK } else { exit::FAILED }))
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let counts: Vec<String> = std::iter::once(format!("{} record(s)", r.records))
        .chain(
            r.summary
                .iter()
                .map(|(k, n)| format!("{n} {}(s)", k.trim_end_matches('s'))),
        )
        .collect();
    let unchecked = if r.unchecked > 0 {
        format!(
            ", {} written before checksums (read unchecked)",
            r.unchecked
        )
    } else {
        String::new()
    };
    let verdict = if r.damage.is_empty() { "ok" } else { "DAMAGED" };
    out.push_str(&format!(
        "{} ({}): {verdict} · {}{unchecked}\n",
        r.name,
        r.path.display(),
        counts.join(", ")
    ));
    for f in r.damage.iter().take(SHOWN) {
        out.push_str(&format!("  damaged: {}: {}\n", f.key, f.problem));
    }
    if r.damage.len() > SHOWN {
        out.push_str(&format!(
            "  … and {} more (portflow --json verify lists them all)\n",
            r.damage.len() - SHOWN
        ));
    }
    for f in &r.notes {
        out.push_str(&format!("  note: {}: {}\n", f.key, f.problem));
    }
    out
}
