//! Runs: creating one from a run file, loading a stored one and its pinned
//! workflow, assembling its driver, and marking it finished.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{Error, Result};
use crate::clock::{Clock, ScaledClock, SharedClock, SystemClock};
use crate::engine::executor::DriveEnd;
use crate::engine::instance::Instance;
use crate::engine::run::{new_run_id, RunRecord, WorkflowPin};
use crate::spec::runfile::RunFile;
use crate::spec::{self, model::Workflow};
use crate::store::commit::Committer;
use crate::store::{records, Batch, Store};

/// Instances written per batch when a run is created.
const CREATE_CHUNK: usize = 5000;

/// The line `run` prints when a run starts.
pub fn started_line(record: &RunRecord) -> String {
    format!(
        "run {}: {} v{} ({}), {} subjects",
        record.id,
        record.workflow.name,
        record.workflow.version,
        &record.workflow.hash[..12.min(record.workflow.hash.len())],
        record.subjects
    )
}

/// Salt that keeps run ids unique when one process starts several in one millisecond.
static RUN_SALT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh run id that no stored run has.
pub fn fresh_run_id(store: &dyn Store) -> Result<String> {
    loop {
        let salt = RUN_SALT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = new_run_id(
            SystemClock.now(),
            u64::from(std::process::id()) ^ salt.rotate_left(32),
        );
        if records::get_run(store, &id)?.is_none() {
            return Ok(id);
        }
    }
}

/// Options of [`create_run`].
#[derive(Debug, Default)]
pub struct NewRun {
    /// Label instead of the run file's.
    pub label: Option<String>,
    /// Run id chosen beforehand (a schedule records it first).
    pub id: Option<String>,
    /// Virtual instant a simulated run starts at (a rehearsing daemon's).
    pub virtual_start: Option<crate::clock::Timestamp>,
}

/// Store a new run of `subjects` (a subset of `loaded`'s, in order) and return it
/// with its clock. The run record is written last, so a crash part-way leaves
/// only instances no run points at, never a run with missing instances.
pub async fn create_run(
    store: &dyn Store,
    committer: &Committer,
    loaded: &spec::LoadedRun,
    file: &Path,
    subjects: &[&spec::runfile::Subject],
    opts: NewRun,
) -> Result<(RunRecord, SharedClock)> {
    let NewRun {
        label,
        id,
        virtual_start,
    } = opts;
    let scale = loaded.file.time_scale;
    // A daemon rehearsing on a virtual clock starts simulated runs at its own instant.
    let anchor = (scale != 1.0).then(|| {
        let mut c = ScaledClock::starting_now(scale);
        if let Some(t) = virtual_start {
            c.virtual_anchor = t;
        }
        c
    });
    let clock: SharedClock = match anchor {
        Some(c) => Arc::new(c),
        None => Arc::new(SystemClock),
    };
    let now = clock.now();
    let id = match id {
        Some(id) => id,
        None => fresh_run_id(store)?,
    };
    let base_dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base_dir = std::fs::canonicalize(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    let wf = &loaded.workflow;
    let record = RunRecord {
        id: id.clone(),
        label: label.or_else(|| loaded.file.label.clone()),
        created_at: now,
        workflow: WorkflowPin::of(wf),
        then: loaded.then.iter().map(WorkflowPin::of).collect(),
        run_origin: file.display().to_string(),
        run_text: loaded.text.clone(),
        base_dir,
        clock: anchor,
        subjects: subjects.len() as u32,
        finished_at: None,
        breaker: Default::default(),
    };
    let mut batch = Batch::default();
    for (i, subject) in subjects.iter().enumerate() {
        let mut inputs = serde_json::Map::new();
        for name in wf.workflow.inputs.keys() {
            let v = subject
                .inputs
                .get(name)
                .map_or(Value::Null, |s| Value::String(s.clone()));
            inputs.insert(name.clone(), v);
        }
        let subject_name = subject
            .inputs
            .get(&wf.workflow.subject)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"));
        let inst = Instance::new(&id, i as u32, subject_name, inputs, now);
        records::put_new_instance(&mut batch, &inst)?;
        if batch.ops.len() >= CREATE_CHUNK * 3 {
            committer.commit(std::mem::take(&mut batch)).await?;
        }
    }
    records::put_run(&mut batch, &record)?;
    committer.commit(batch).await?;
    Ok((record, clock))
}

/// The stored run `id`.
pub fn load_run(store: &dyn Store, id: &str) -> Result<RunRecord> {
    records::get_run(store, id)?.ok_or_else(|| Error::RunNotFound(id.to_string()))
}

/// The full id of the stored run `given` names: its own id, or a prefix of
/// exactly one run's id. Every command that takes a run id resolves it here,
/// whether this process or the daemon holds the store.
pub fn resolve_run_id(store: &dyn Store, given: &str) -> Result<String> {
    // Run ids never contain `/`; an empty prefix names no run in particular.
    if given.is_empty() || given.contains('/') {
        return Err(Error::RunNotFound(given.to_string()));
    }
    if records::get_run(store, given)?.is_some() {
        return Ok(given.to_string());
    }
    let mut ids = records::run_ids_with_prefix(store, given)?;
    match ids.len() {
        0 => Err(Error::RunNotFound(given.to_string())),
        1 => Ok(ids.remove(0)),
        total => {
            ids.truncate(super::error::MAX_CANDIDATES);
            Err(Error::AmbiguousRun {
                prefix: given.to_string(),
                candidates: ids,
                total,
            })
        }
    }
}

/// The composed workflow a run pinned when it started.
pub fn pinned_workflow(record: &RunRecord) -> Result<Workflow> {
    let parse = |pin: &WorkflowPin| {
        spec::parse_workflow(&pin.text, &pin.origin)
            .map(|l| l.workflow)
            .map_err(|e| {
                Error::runtime(format!(
                    "the workflow {} pinned by run {} no longer parses with this portflow: {}",
                    pin.name,
                    record.id,
                    e.to_string().trim_end()
                ))
                .hint("use the portflow version that started the run")
            })
    };
    let main = parse(&record.workflow)?;
    let then = record.then.iter().map(parse).collect::<Result<Vec<_>>>()?;
    Ok(spec::compose(&main, &then))
}

/// The run file stored with a run.
pub fn stored_run_file(record: &RunRecord) -> Result<RunFile> {
    serde_yaml::from_str(&record.run_text).map_err(|e| {
        Error::runtime(format!(
            "the run file stored with run {} no longer parses: {e}",
            record.id
        ))
    })
}

/// The clock a stored run runs on.
pub fn run_clock(record: &RunRecord) -> SharedClock {
    match record.clock {
        Some(c) => Arc::new(c),
        None => Arc::new(SystemClock),
    }
}

/// After a drive of `record`'s run ended: when it finished, record so (once).
/// Returns the run record as stored now (the driver may have stored the
/// breaker's state meanwhile).
pub async fn finish_run(
    store: &dyn Store,
    committer: &Committer,
    record: RunRecord,
    end: DriveEnd,
    clock: &SharedClock,
) -> Result<RunRecord> {
    let mut record = records::get_run(store, &record.id)?.unwrap_or(record);
    if end == DriveEnd::Finished && record.finished_at.is_none() {
        record.finished_at = Some(clock.now());
        let mut b = Batch::default();
        records::put_run(&mut b, &record)?;
        committer.commit(b).await?;
    }
    Ok(record)
}

/// The outcome of a stored run (exit code and per-workflow counts).
pub fn run_outcome(
    store: &dyn Store,
    record: &RunRecord,
    workflow: &Workflow,
) -> Result<crate::report::outcome::Outcome> {
    let names: Vec<String> = std::iter::once(record.workflow.name.clone())
        .chain(record.then.iter().map(|t| t.name.clone()))
        .collect();
    let instances = records::list_instances(store, &record.id)?;
    Ok(crate::report::outcome::Outcome::of(
        workflow, &names, &instances,
    ))
}

/// `resume --continue`: accept the failures counted so far and close the
/// run's circuit breaker, durably, before the run is driven again.
pub async fn accept_failures(
    store: &dyn Store,
    committer: &Committer,
    record: &mut RunRecord,
    by: &str,
) -> Result<u32> {
    let wf = pinned_workflow(record)?;
    let accepted = crate::engine::budget::count_failures(store, &record.id, &wf)?;
    record.breaker.accepted = accepted;
    record.breaker.tripped = None;
    record
        .breaker
        .continued
        .push(crate::engine::run::Continued {
            at: run_clock(record).now(),
            by: by.to_string(),
            accepted,
        });
    let mut b = Batch::default();
    records::put_run(&mut b, record)?;
    committer.commit(b).await?;
    Ok(accepted)
}

/// The runs `resume` drives: `id`, or every unfinished one.
pub fn runs_to_resume(store: &dyn Store, id: Option<&str>) -> Result<Vec<RunRecord>> {
    Ok(match id {
        Some(id) => vec![load_run(store, id)?],
        None => records::list_runs(store)?
            .into_iter()
            .filter(|r| r.finished_at.is_none())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn store_with(ids: &[&str]) -> MemoryStore {
        let store = MemoryStore::new();
        let mut b = Batch::default();
        for id in ids {
            records::put_run(&mut b, &crate::app::outages::tests::record(id)).expect("put");
        }
        store.apply(&b).expect("apply");
        store
    }

    #[test]
    fn a_unique_prefix_names_its_run_and_an_ambiguous_one_lists_at_most_ten() {
        let mut ids: Vec<String> = (0..12)
            .map(|i| format!("20261123-1015{i:02}-ab12"))
            .collect();
        ids.push("20261124-090000-0001".into());
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let store = store_with(&refs);
        let full = "20261124-090000-0001";
        assert_eq!(resolve_run_id(&store, full).expect("exact"), full);
        assert_eq!(resolve_run_id(&store, "20261124").expect("prefix"), full);
        assert_eq!(
            resolve_run_id(&store, "20261123-101507").expect("prefix"),
            "20261123-101507-ab12"
        );
        let e = resolve_run_id(&store, "20261123").expect_err("ambiguous");
        assert_eq!(e.kind(), crate::app::Kind::Input);
        let text = e.to_string();
        assert!(text.contains("matches 12 runs"), "{text}");
        assert!(
            text.contains("20261123-101509-ab12") && !text.contains("20261123-101510"),
            "{text}"
        );
        assert!(text.ends_with(" and 2 more"), "{text}");
        assert!(e.hint_text().is_some_and(|h| h.contains("portflow status")));
        for unknown in ["2027", "", "2026/", "x"] {
            assert!(
                matches!(resolve_run_id(&store, unknown), Err(Error::RunNotFound(_))),
                "{unknown:?}"
            );
        }
    }
}
