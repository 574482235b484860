//! Group commit: many transitions share one atomic batch and one fsync.
//!
//! Callers hand a [`Batch`] to the [`Committer`]; a dedicated thread takes
//! everything queued, applies it as one batch, syncs once and only then
//! acknowledges each caller. A transition counts as done only after its ack.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::oneshot;

use super::{Batch, Store, StoreError};

struct Request {
    batch: Batch,
    ack: Option<oneshot::Sender<Result<(), String>>>,
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
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(e)),
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

fn run(store: Arc<dyn Store>, rx: mpsc::Receiver<Request>, stats: Arc<CommitStats>, group: bool) {
    let mut failed: Option<String> = None;
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
        let result = match &failed {
            // After a failed write nothing more is acknowledged: the caller must stop.
            Some(e) => Err(e.clone()),
            None => {
                let mut merged = Batch::default();
                for r in &mut reqs {
                    merged.extend(std::mem::take(&mut r.batch));
                }
                let bytes = merged.bytes() as u64;
                let t0 = crate::clock::Stopwatch::start();
                let res = store.apply(&merged).and_then(|()| store.sync());
                stats
                    .write_micros
                    .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                stats.groups.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                res.map_err(|e| {
                    let msg = e.to_string();
                    tracing::error!("commit failed: {msg}");
                    failed = Some(msg.clone());
                    msg
                })
            }
        };
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
}
