//! Waves: which subjects of a run file the next wave takes, and whether a
//! schedule's last run is still going.

use std::collections::HashSet;

use super::Result;
use crate::engine::instance::Status;
use crate::spec::runfile::Subject;
use crate::spec::LoadedRun;
use crate::store::{records, Store};

/// The next `n` subjects of a run file not yet migrated: subjects are taken in
/// file order, skipping any that a run of the same workflow has already
/// succeeded, has in flight, or left failed or needing attention (a person must
/// look at those first). Cancelled and rolled-back subjects are eligible again.
pub fn next_wave<'a>(
    store: &dyn Store,
    loaded: &'a LoadedRun,
    n: usize,
) -> Result<Vec<&'a Subject>> {
    let wf = &loaded.workflow.workflow;
    let mut taken: HashSet<String> = HashSet::new();
    for run in records::list_runs(store)? {
        if run.workflow.name != wf.name {
            continue;
        }
        records::for_each_instance(store, &run.id, &mut |inst| {
            if !matches!(inst.status, Status::Cancelled | Status::RolledBack { .. }) {
                taken.insert(inst.subject);
            }
        })?;
    }
    let mut seen = HashSet::new();
    Ok(loaded
        .subjects
        .iter()
        .filter(|s| {
            let name = s.inputs.get(&wf.subject).cloned().unwrap_or_default();
            !taken.contains(&name) && seen.insert(name)
        })
        .take(n)
        .collect())
}

/// Whether run `run` exists and has not finished.
pub fn run_unfinished(store: &dyn Store, run: Option<&str>) -> Result<bool> {
    Ok(match run {
        Some(id) => records::get_run(store, id)?.is_some_and(|r| r.finished_at.is_none()),
        None => false,
    })
}
