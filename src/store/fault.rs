//! A fault-injecting [`Store`] wrapper: fails syncs or tears batches on demand,
//! so tests can check that the engine never acknowledges what was not stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Batch, Store, StoreError};

/// Wraps a store; counts calls and fails the ones told to.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    applies: AtomicU64,
    syncs: AtomicU64,
    /// Fail every apply from this call number on (1-based; 0 = never).
    fail_apply_from: AtomicU64,
    /// On that failing apply, first write this many ops (a torn batch).
    tear_ops: AtomicU64,
    /// Fail every sync from this call number on (1-based; 0 = never).
    fail_sync_from: AtomicU64,
    /// Injected failures are a full disk (ENOSPC) rather than a generic failure.
    no_space: std::sync::atomic::AtomicBool,
}

impl FaultyStore {
    /// Wrap `inner` with no faults armed.
    pub fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            applies: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            fail_apply_from: AtomicU64::new(0),
            tear_ops: AtomicU64::new(0),
            fail_sync_from: AtomicU64::new(0),
            no_space: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Make injected failures look like a full disk.
    pub fn as_full_disk(&self) {
        self.no_space.store(true, Ordering::SeqCst);
    }

    fn injected(&self, what: &'static str) -> StoreError {
        if self.no_space.load(Ordering::SeqCst) {
            StoreError::NoSpace {
                path: std::path::PathBuf::from("(fault store)"),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            }
        } else {
            StoreError::Injected(what)
        }
    }

    /// Fail applies from the `n`-th on, writing `torn` ops of the failing batch first.
    pub fn fail_apply_from(&self, n: u64, torn: u64) {
        self.tear_ops.store(torn, Ordering::SeqCst);
        self.fail_apply_from.store(n, Ordering::SeqCst);
    }

    /// Fail syncs from the `n`-th on.
    pub fn fail_sync_from(&self, n: u64) {
        self.fail_sync_from.store(n, Ordering::SeqCst);
    }

    /// Applies so far.
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    /// Syncs so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.scan_prefix(prefix, visit)
    }
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let n = self.applies.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_apply_from.load(Ordering::SeqCst);
        if from != 0 && n >= from {
            let torn = self.tear_ops.load(Ordering::SeqCst) as usize;
            if torn > 0 {
                let part = Batch {
                    ops: batch.ops.iter().take(torn).cloned().collect(),
                };
                self.inner.apply(&part)?;
            }
            return Err(self.injected("apply"));
        }
        self.inner.apply(batch)
    }
    fn sync(&self) -> Result<(), StoreError> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_sync_from.load(Ordering::SeqCst);
        if from != 0 && n >= from {
            return Err(self.injected("sync"));
        }
        self.inner.sync()
    }
}
