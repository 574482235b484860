//! Group commit: many transitions share one atomic batch and one fsync.
//!
//! Callers hand a [`Batch`] to the [`Committer`]; a dedicated thread takes
//! everything queued and applies it as one batch (sled's atomic batches are
//! costly each, so there is one per group); a second thread syncs once for
//! every group applied so far and only then acknowledges each caller. A
//! transition counts as done only after its ack.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

use super::{Batch, Store, StoreError};

struct Request {
    batch: Batch,
    ack: Option<oneshot::Sender<Result<(), Arc<StoreError>>>>,
    queued: crate::clock::Stopwatch,
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches handed in.
    pub requests: AtomicU64,
    /// Groups written (= syncs).
    pub groups: AtomicU64,
    /// Payload bytes written.
    pub bytes: AtomicU64,
    /// Total microseconds spent in apply + sync.
    pub write_micros: AtomicU64,
    /// Time from handing a durable batch in to its acknowledgement.
    pub latency: super::latency::LatencyHistogram,
    /// Callers waiting for an acknowledgement now (a virtual clock only moves
    /// when this is zero).
    pub waiting: AtomicU64,
}

/// Counts a caller in [`CommitStats::waiting`] until dropped (also when the
/// waiting future is cancelled).
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handle to the commit thread. Cloning is cheap.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
    stats: Arc<CommitStats>,
}

/// Largest number of requests folded into one group.
const MAX_GROUP: usize = 4096;

impl Committer {
    /// Start the commit thread over `store`. With `group == false` every request is
    /// applied and synced alone (the naive design, kept for the benchmark).
    pub fn start(store: Arc<dyn Store>, group: bool) -> Committer {
        let (tx, rx) = mpsc::channel::<Request>();
        let stats = Arc::new(CommitStats::default());
        let st = stats.clone();
        let spawned = thread::Builder::new()
            .name("portflow-commit".into())
            .spawn(move || run(store, rx, st, group));
        if let Err(e) = spawned {
            tracing::error!("cannot start the commit thread: {e}");
        }
        Committer { tx, stats }
    }

    /// Write `batch` durably; returns once it is synced.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        // Metrics: caller-side latency of real writes (barriers carry nothing).
        let timed = (!batch.is_empty()).then(crate::clock::Stopwatch::start);
        let (ack, done) = oneshot::channel();
        self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.stats.waiting);
        self.tx
            .send(Request {
                batch,
                ack: Some(ack),
                queued: crate::clock::Stopwatch::start(),
            })
            .map_err(|_| StoreError::Closed)?;
        match done.await {
            Ok(Ok(())) => {
                if let Some(t) = timed {
                    crate::metrics::global().commit_latency(t.elapsed());
                }
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::Commit(e)),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Queue `batch` without waiting: it lands with the next group. For in-place
    /// updates whose loss costs only a repeated poll.
    pub fn commit_lazy(&self, batch: Batch) -> Result<(), StoreError> {
        self.tx
            .send(Request {
                batch,
                ack: None,
                queued: crate::clock::Stopwatch::start(),
            })
            .map_err(|_| StoreError::Closed)
    }

    /// Wait until everything queued so far is durable.
    pub async fn barrier(&self) -> Result<(), StoreError> {
        self.commit(Batch::default()).await
    }

    /// Counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

/// The first write or sync failure; after it nothing more is acknowledged.
type Failed = Arc<Mutex<Option<Arc<StoreError>>>>;

fn failure(failed: &Failed) -> Option<Arc<StoreError>> {
    failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Record `e` as the failure (the first one stays) and return it shared.
fn fail(failed: &Failed, e: StoreError) -> Arc<StoreError> {
    // The caller reports it (the command's error, the daemon's driver log).
    tracing::debug!("commit failed: {e}");
    failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| Arc::new(e))
        .clone()
}

/// A group applied (or refused) on its way to the sync thread.
type Applied = (Vec<Request>, Result<(), Arc<StoreError>>);

/// The commit thread. In group mode it applies each group as one batch and
/// hands it to a sync thread, so the next group is applied while the last one
/// is being synced; one sync covers every group applied before it started.
fn run(store: Arc<dyn Store>, rx: mpsc::Receiver<Request>, stats: Arc<CommitStats>, group: bool) {
    let failed: Failed = Arc::default();
    let (to_sync, applied) = mpsc::channel::<Applied>();
    let syncer = if group {
        let (s, st, f) = (store.clone(), stats.clone(), failed.clone());
        thread::Builder::new()
            .name("portflow-sync".into())
            .spawn(move || sync_loop(s, applied, st, f))
            .map_err(|e| tracing::error!("cannot start the sync thread, syncing inline: {e}"))
            .ok()
    } else {
        None
    };
    while let Ok(first) = rx.recv() {
        let mut reqs = vec![first];
        if group {
            while reqs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => reqs.push(r),
                    Err(_) => break,
                }
            }
        }
        let result = match failure(&failed) {
            // After a failed write nothing more is acknowledged: the caller must stop.
            Some(e) => Err(e),
            None => {
                let mut merged = Batch::default();
                for r in &mut reqs {
                    merged.extend(std::mem::take(&mut r.batch));
                }
                let t0 = crate::clock::Stopwatch::start();
                let res = store.apply(&merged);
                stats
                    .write_micros
                    .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                stats
                    .bytes
                    .fetch_add(merged.bytes() as u64, Ordering::Relaxed);
                res.map_err(|e| fail(&failed, e))
            }
        };
        if syncer.is_some() {
            if to_sync.send((reqs, result)).is_err() {
                break;
            }
        } else {
            let result = result.and_then(|()| sync(&*store, &stats, &failed));
            acknowledge(&stats, reqs, &result);
        }
    }
}

/// The sync thread: one sync for every group applied so far, then the acks.
fn sync_loop(
    store: Arc<dyn Store>,
    applied: mpsc::Receiver<Applied>,
    stats: Arc<CommitStats>,
    failed: Failed,
) {
    while let Ok(first) = applied.recv() {
        let mut groups = vec![first];
        while let Ok(g) = applied.try_recv() {
            groups.push(g);
        }
        let synced = match failure(&failed) {
            Some(e) => Err(e),
            None => sync(&*store, &stats, &failed),
        };
        for (reqs, res) in groups {
            acknowledge(&stats, reqs, &res.and(synced.clone()));
        }
    }
}

fn sync(store: &dyn Store, stats: &CommitStats, failed: &Failed) -> Result<(), Arc<StoreError>> {
    let t0 = crate::clock::Stopwatch::start();
    let res = store.sync();
    stats
        .write_micros
        .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
    stats.groups.fetch_add(1, Ordering::Relaxed);
    res.map_err(|e| fail(failed, e))
}

fn acknowledge(stats: &CommitStats, reqs: Vec<Request>, result: &Result<(), Arc<StoreError>>) {
    stats
        .requests
        .fetch_add(reqs.len() as u64, Ordering::Relaxed);
    for r in reqs {
        if let Some(ack) = r.ack {
            stats.latency.record(r.queued.elapsed());
            let _ = ack.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fault::FaultyStore;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn concurrent_commits_share_groups() {
        let store = Arc::new(MemoryStore::new());
        let c = Committer::start(store.clone(), true);
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut b = Batch::default();
                b.put(format!("k{i}").into_bytes(), b"v".to_vec());
                c.commit(b).await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await, Ok(Ok(()))));
        }
        assert_eq!(store.get(b"k199").ok().flatten(), Some(b"v".to_vec()));
        let groups = c.stats().groups.load(Ordering::Relaxed);
        assert!((1..=200).contains(&groups));
    }

    #[tokio::test]
    async fn failed_sync_is_never_acknowledged_and_stays_failed() {
        let inner = Arc::new(MemoryStore::new());
        let faulty = Arc::new(FaultyStore::new(inner));
        faulty.fail_sync_from(1);
        let c = Committer::start(faulty.clone(), true);
        let mut b = Batch::default();
        b.put(b"a".to_vec(), b"1".to_vec());
        assert!(c.commit(b).await.is_err());
        // Later commits fail too, even though syncs would now be attempted again.
        assert!(c.barrier().await.is_err());
        assert_eq!(faulty.syncs(), 1);
    }

    #[tokio::test]
    async fn a_full_disk_keeps_its_type_through_the_commit_thread() {
        let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
        faulty.as_full_disk();
        faulty.fail_apply_from(1, 0);
        let c = Committer::start(faulty, true);
        let mut b = Batch::default();
        b.put(b"a".to_vec(), b"1".to_vec());
        let err = c.commit(b).await.err();
        assert!(
            matches!(
                err.as_ref().map(StoreError::root),
                Some(StoreError::NoSpace { .. })
            ),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.to_string().contains("No space left on device")));
    }
}
