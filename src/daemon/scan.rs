//! Per-run figures that the daemon's status page and `/metrics` read every few
//! seconds: instances per state, who is out of service, ended outage lengths,
//! who waits for a person, every subject's state, the porting window.
//!
//! Reading them means decoding every instance of every run, so they are cached
//! per run. A run at rest (finished and not driven) changes only through an
//! operator input, which calls [`ScanCache::invalidate`]; it is not read again
//! until then. A run in motion is read again once its entry is [`TTL`] old.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::backends::manual_ops;
use crate::app::outages::{for_each_head, DownRow, Head};
use crate::app::runs::{pinned_workflow, stored_run_file};
use crate::clock::{Stopwatch, Timestamp};
use crate::daemon::worklist::{self, WorkItem, WorkKind};
use crate::engine::figures::needs_operator;
use crate::engine::run::RunRecord;
use crate::metrics::{Family, Histogram, HistogramSnapshot, MetricType, OUTAGE_BUCKETS};
use crate::report::normalise::normalise;
use crate::schedule::Window;
use crate::spec::runfile::WindowSpec;
use crate::store::keys::InstanceKey;
use crate::store::records;
use crate::store::{Store, StoreError};

/// How stale the figures of a run in motion may be.
pub(crate) const TTL: Duration = Duration::from_secs(5);

/// What one read of a run's instances found.
#[derive(Debug)]
pub(crate) struct RunScan {
    /// Instances per state name.
    pub counts: BTreeMap<&'static str, usize>,
    /// Out of service now (unsorted; durations are taken when shown).
    pub down: Vec<DownRow>,
    /// Lengths of the run's ended outages.
    pub ended: HistogramSnapshot,
    /// Instances waiting for a person, in index order.
    pub work: Vec<WorkItem>,
    /// Every subject with its state name, in index order (for search).
    pub subjects: Vec<(String, &'static str)>,
    /// Step ids of the pinned workflow, read only when someone is down or
    /// waits for a person (empty otherwise).
    pub steps: Vec<String>,
    /// The run's porting window, while the run is unfinished.
    pub window: Option<RunWindow>,
    /// Instances an operator has to act on (failed, rolled back, needs
    /// attention), in index order.
    pub attention: Vec<Attention>,
}

impl Attention {
    /// One that a driver's figures list (`steps`: the run's workflow).
    pub fn of(s: &crate::engine::figures::Stopped, wf: &crate::spec::model::Workflow) -> Attention {
        Attention {
            subject: s.subject.clone(),
            state: s.state,
            step: wf
                .steps
                .get(s.step)
                .map(|st| st.id.clone())
                .unwrap_or_default(),
            reason: s.reason.chars().take(300).collect(),
            cause: normalise(&s.reason, &s.inputs),
        }
    }
}

/// One instance that needs an operator, with its message and its cause.
#[derive(Debug)]
pub(crate) struct Attention {
    /// Subject.
    pub subject: String,
    /// State name.
    pub state: &'static str,
    /// Step id (empty when the workflow cannot be read).
    pub step: String,
    /// The message (at most 300 characters).
    pub reason: String,
    /// The message with its values lifted out ([`normalise`]).
    pub cause: String,
}

/// A run's porting window as its run file writes it, compiled.
#[derive(Debug)]
pub(crate) struct RunWindow {
    /// The stored `window:` block.
    pub spec: WindowSpec,
    /// It compiled.
    pub window: Window,
}

impl RunScan {
    /// Read every instance of `record`'s run once.
    pub fn read(store: &dyn Store, record: &RunRecord) -> Result<RunScan, StoreError> {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let ended = Histogram::new(OUTAGE_BUCKETS);
        let mut down: Vec<Head> = Vec::new();
        let mut work = Vec::new();
        let mut subjects = Vec::new();
        let mut stopped: Vec<u32> = Vec::new();
        for_each_head(store, &record.id, &mut |h| {
            if needs_operator(&h.status).is_some() {
                stopped.push(h.idx);
            }
            *counts.entry(h.status.name()).or_insert(0) += 1;
            for o in &h.outages {
                ended.observe(o.end.since(o.start));
            }
            work.extend(worklist::of_head(&h));
            subjects.push((h.subject.clone(), h.status.name()));
            if h.down.is_some() {
                down.push(h);
            }
        })?;
        // Parse the pinned workflow (for step names) only when someone is down
        // or waits; the stored run file only for waits and an unfinished run's window.
        let wf = if down.is_empty() && work.is_empty() && stopped.is_empty() {
            None
        } else {
            pinned_workflow(record).ok()
        };
        let steps: Vec<String> = wf
            .as_ref()
            .map(|wf| wf.steps.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        let needs_file = !work.is_empty() || record.finished_at.is_none();
        let file = needs_file.then(|| stored_run_file(record).ok()).flatten();
        let work = match (&wf, &file) {
            (Some(wf), Some(file)) => worklist::signal_only(work, wf, &manual_ops(file)),
            // Without them no wait can be judged: keep what is blocked.
            _ => work
                .into_iter()
                .filter(|w| w.kind != WorkKind::SignalOnly)
                .collect(),
        };
        let window = match (record.finished_at, file) {
            (None, Some(file)) => file.window.and_then(|spec| {
                let window = spec.compile().ok()?;
                Some(RunWindow { spec, window })
            }),
            _ => None,
        };
        // The whole snapshot (for the inputs a cause lifts out) only of those stopped.
        let mut attention = Vec::with_capacity(stopped.len());
        for idx in stopped {
            let key = InstanceKey {
                run: record.id.clone(),
                idx,
            };
            let Some(i) = records::get_instance(store, &key)? else {
                continue;
            };
            if let Some((step, why)) = needs_operator(&i.status) {
                attention.push(Attention {
                    state: i.status.name(),
                    step: steps.get(step).cloned().unwrap_or_default(),
                    reason: why.chars().take(300).collect(),
                    cause: normalise(why, &i.inputs),
                    subject: i.subject,
                });
            }
        }
        Ok(RunScan {
            attention,
            counts,
            down: down.iter().filter_map(|h| DownRow::of(h, &steps)).collect(),
            ended: ended.snapshot(),
            work,
            subjects,
            steps,
            window,
        })
    }
}

struct Entry {
    scan: Arc<RunScan>,
    taken: Stopwatch,
    generation: u64,
    finished_at: Option<Timestamp>,
}

/// The daemon's cache of [`RunScan`]s, by run id.
#[derive(Default)]
pub(crate) struct ScanCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Bumped by every operator input; entries from before are read again.
    generation: AtomicU64,
}

impl ScanCache {
    /// Instances were written outside a run's driver: read every run again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The figures of `record`'s run; `driven` says whether a driver runs it now.
    pub fn get(
        &self,
        store: &dyn Store,
        record: &RunRecord,
        driven: bool,
        ttl: Duration,
    ) -> Result<Arc<RunScan>, StoreError> {
        // Taken before the read: an input committed during it makes this entry old.
        let generation = self.generation.load(Ordering::SeqCst);
        let at_rest = record.finished_at.is_some() && !driven;
        if let Some(e) = self.lock().get(&record.id) {
            let current = e.generation == generation;
            let unchanged = at_rest && e.finished_at == record.finished_at;
            if current && (unchanged || e.taken.elapsed() < ttl) {
                return Ok(e.scan.clone());
            }
        }
        // Read without holding the lock: two requests may both read, never wait.
        let scan = Arc::new(RunScan::read(store, record)?);
        self.lock().insert(
            record.id.clone(),
            Entry {
                scan: scan.clone(),
                taken: Stopwatch::start(),
                generation,
                finished_at: record.finished_at,
            },
        );
        Ok(scan)
    }

    /// Forget runs that are no longer stored.
    pub fn retain(&self, runs: &HashSet<&str>) {
        self.lock().retain(|id, _| runs.contains(id.as_str()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `/metrics` shows of one run.
pub(crate) struct MetricView<'a> {
    /// Run id.
    pub run: &'a str,
    /// Instances per state name.
    pub counts: BTreeMap<&'static str, usize>,
    /// Out of service now.
    pub down: usize,
    /// Lengths of the ended outages.
    pub ended: HistogramSnapshot,
}

impl RunScan {
    /// The metrics of this scan of `run`.
    pub fn metrics<'a>(&self, run: &'a str) -> MetricView<'a> {
        MetricView {
            run,
            counts: self.counts.clone(),
            down: self.down.len(),
            ended: self.ended.clone(),
        }
    }
}

/// `portflow_instances`, `portflow_out_of_service` and
/// `portflow_outage_duration_seconds` from the runs' figures.
pub(crate) fn families(runs: &[MetricView<'_>]) -> Vec<Family> {
    let mut instances = Family::new(
        "portflow_instances",
        "Instances per run and state, from the stored snapshots.",
        MetricType::Gauge,
    );
    let mut down = Family::new(
        "portflow_out_of_service",
        "Subjects whose number is out of service now, per run.",
        MetricType::Gauge,
    );
    let mut ended = HistogramSnapshot::empty(OUTAGE_BUCKETS);
    for v in runs {
        for (state, n) in &v.counts {
            instances = instances.sample(&[("run", v.run), ("state", state)], *n as f64);
        }
        down = down.sample(&[("run", v.run)], v.down as f64);
        ended.add(&v.ended);
    }
    vec![
        instances,
        down,
        ended.family(
            "portflow_outage_duration_seconds",
            "How long numbers were out of service, per ended outage, over every stored run.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::outages::tests::{instances, record, span, MIN, T};
    use crate::engine::instance::Status;
    use crate::metrics::encode;
    use crate::store::memory::MemoryStore;
    use crate::store::{records, Batch};

    fn put(store: &MemoryStore, record: &RunRecord, insts: &[crate::engine::instance::Instance]) {
        let mut b = Batch::default();
        records::put_run(&mut b, record).expect("our records encode");
        for i in insts {
            records::put_new_instance(&mut b, i).expect("our records encode");
        }
        assert!(store.apply(&b).is_ok());
    }

    fn scan(store: &MemoryStore, r: &RunRecord) -> RunScan {
        match RunScan::read(store, r) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn metrics_text_has_the_gauge_per_run_and_the_outage_histogram() {
        let store = MemoryStore::new();
        let r1 = record("r1");
        put(&store, &r1, &instances("r1"));
        let r2 = record("r2");
        let mut long = crate::app::outages::tests::inst("r2", 0, Status::Succeeded);
        long.outages = vec![span(2000, 25 * 60), span(100, 1)]; // 25 h, and 1 min
        put(&store, &r2, &[long]);
        let (s1, s2) = (scan(&store, &r1), scan(&store, &r2));
        let text = encode(&families(&[s1.metrics("r1"), s2.metrics("r2")]));
        for line in [
            "# TYPE portflow_out_of_service gauge\n",
            "portflow_out_of_service{run=\"r1\"} 2\n",
            "portflow_out_of_service{run=\"r2\"} 0\n",
            "portflow_instances{run=\"r1\",state=\"succeeded\"} 2\n",
            "portflow_instances{run=\"r1\",state=\"failed\"} 1\n",
            "# TYPE portflow_outage_duration_seconds histogram\n",
            // r2's one-minute outage; r1's 14 minutes land in the 30-minute bucket.
            "portflow_outage_duration_seconds_bucket{le=\"60\"} 1\n",
            "portflow_outage_duration_seconds_bucket{le=\"600\"} 1\n",
            "portflow_outage_duration_seconds_bucket{le=\"1800\"} 2\n",
            "portflow_outage_duration_seconds_bucket{le=\"86400\"} 2\n",
            "portflow_outage_duration_seconds_bucket{le=\"172800\"} 3\n",
            "portflow_outage_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "portflow_outage_duration_seconds_count 3\n",
            "portflow_outage_duration_seconds_sum 90900\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_run_at_rest_is_read_again_only_after_an_input_and_one_in_motion_after_the_ttl() {
        let store = MemoryStore::new();
        let mut r = record("r1");
        r.finished_at = Some(Timestamp(T - MIN));
        let mut insts = instances("r1");
        put(&store, &r, &insts);
        let cache = ScanCache::default();
        let get = |driven: bool, ttl: Duration| match cache.get(&store, &r, driven, ttl) {
            Ok(s) => s.down.len(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(get(false, Duration::ZERO), 2);
        // Service comes back for subject 0 behind the cache's back.
        insts[0].down = None;
        put(&store, &r, &insts[..1]);
        assert_eq!(
            get(false, Duration::ZERO),
            2,
            "at rest: cached despite a zero TTL"
        );
        assert_eq!(
            get(true, Duration::from_secs(60)),
            2,
            "in motion, within the TTL"
        );
        assert_eq!(
            get(true, Duration::ZERO),
            1,
            "in motion, past the TTL: read again"
        );
        insts[1].down = None;
        put(&store, &r, &insts[1..2]);
        assert_eq!(get(false, Duration::from_secs(60)), 1, "cached again");
        cache.invalidate();
        assert_eq!(
            get(false, Duration::from_secs(60)),
            0,
            "an input invalidates"
        );
        cache.retain(&HashSet::new());
        assert!(cache.lock().is_empty());
    }
}
