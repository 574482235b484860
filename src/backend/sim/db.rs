//! The simulator's storage: the sled database behind a guard that turns a
//! sled panic into a damage error, record keys, sealing and decoding, and the
//! simulator's own errors.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::backend::sim::model::AuditEntry;
use crate::backend::sim::rng::Key;
use crate::backend::{BackendError, ErrorKind};
use crate::store::integrity;
use crate::store::sled_store::CommitMark;
use crate::store::{Damage, StoreError};

/// Errors of the simulator itself (not of simulated calls).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Another process (or another handle in this process) has the store open.
    #[error(
        "simulated tenant store {} is in use by another process (its lock is held); \
         stop the other portflow process or use another directory",
        path.display()
    )]
    InUse {
        /// The store directory.
        path: PathBuf,
    },
    /// The sled database failed.
    #[error("simulated tenant store {}: {source}", path.display())]
    Storage {
        /// The store directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: sled::Error,
    },
    /// A file operation failed.
    #[error("simulated tenant store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A stored record does not parse.
    #[error("simulated tenant store: corrupt record {key}: {source}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Writing the subjects CSV failed.
    #[error("writing subjects CSV: {0}")]
    Csv(#[from] csv::Error),
    /// The store will not open, lost writes, or a record fails its checksum.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A tenant that must exist (runs used it) has no state.
    #[error("simulated tenant store {} {why}", path.display())]
    Missing {
        /// The store directory.
        path: PathBuf,
        /// What was found instead.
        why: &'static str,
    },
}

impl SimError {
    /// The file system holding the store is full.
    pub fn is_no_space(&self) -> bool {
        match self {
            SimError::Storage {
                source: sled::Error::Io(e),
                ..
            }
            | SimError::Io { source: e, .. } => crate::store::is_no_space(e),
            SimError::Store(e) => matches!(e.root(), StoreError::NoSpace { .. }),
            _ => false,
        }
    }

    /// The store is damaged (restoring a backup is the way out).
    pub fn is_damage(&self) -> bool {
        match self {
            SimError::Corrupt { .. } => true,
            SimError::Storage { source, .. } => matches!(source, sled::Error::Corruption { .. }),
            SimError::Store(e) => e.is_damage(),
            _ => false,
        }
    }
}

/// Key of the list of moves in progress.
pub(in crate::backend::sim) const MOVES_KEY: &str = "moves";

/// Key of the latest virtual instant any operation ran at.
pub(in crate::backend::sim) const REACHED_KEY: &str = "reached";

/// Records to write: (key, JSON payload), sealed by [`Db::commit`].
pub(in crate::backend::sim) type Writes = Vec<(Vec<u8>, Vec<u8>)>;

/// The tenant's sled database. Every sled call goes through [`Db::guard`]: a
/// damaged page makes sled panic mid-call, and that must reach the caller as
/// a damage error (restore a backup), not unwind through the engine.
pub(in crate::backend::sim) struct Db {
    inner: sled::Db,
    file: File,
    mark: CommitMark,
    dir: PathBuf,
    /// The last commit stamp known to be on disk (fsynced).
    durable: AtomicU64,
    /// Flush + fsync rounds done (one covers many actions).
    syncs: AtomicU64,
}

impl Db {
    /// Open (creating the directory) and check the commit mark.
    pub(in crate::backend::sim) fn open(dir: &Path) -> Result<Db, SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // open_db catches sled's panics while opening itself.
        let inner =
            crate::store::sled_store::open_db(dir, 64 * 1024 * 1024).map_err(|e| match e {
                StoreError::Locked(path) => SimError::InUse { path },
                other => SimError::Store(other),
            })?;
        let mark = guard(dir, || CommitMark::check(dir, &inner))??;
        let path = dir.join("db");
        let file = File::open(&path).map_err(|source| SimError::Io { path, source })?;
        // What the store holds at open is on disk.
        let durable = AtomicU64::new(mark.last_applied());
        Ok(Db {
            inner,
            file,
            mark,
            dir: dir.to_path_buf(),
            durable,
            syncs: AtomicU64::new(0),
        })
    }

    fn guard<T>(&self, f: impl FnOnce() -> T) -> Result<T, SimError> {
        guard(&self.dir, f)
    }

    fn storage(&self, source: sled::Error) -> SimError {
        SimError::Storage {
            path: self.dir.clone(),
            source,
        }
    }

    /// The raw value at `key`.
    pub(in crate::backend::sim) fn get(&self, key: &str) -> Result<Option<sled::IVec>, SimError> {
        self.guard(|| self.inner.get(key))?
            .map_err(|e| self.storage(e))
    }

    /// The record at `key`, decoded.
    pub(in crate::backend::sim) fn load<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, SimError> {
        match self.get(key)? {
            Some(v) => parse(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The last record under `prefix`.
    pub(in crate::backend::sim) fn last(
        &self,
        prefix: &str,
    ) -> Result<Option<(sled::IVec, sled::IVec)>, SimError> {
        self.guard(|| self.inner.scan_prefix(prefix).next_back())?
            .transpose()
            .map_err(|e| self.storage(e))
    }

    /// Feed every record under `prefix` (`""`: all), in key order, to `f`,
    /// stopping at the first error.
    pub(in crate::backend::sim) fn scan(
        &self,
        prefix: &str,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), SimError>,
    ) -> Result<(), SimError> {
        self.guard(|| {
            for item in self.inner.scan_prefix(prefix) {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                f(&k, &v)?;
            }
            Ok(())
        })?
    }

    /// Like [`Db::scan`] over everything, handing sled's read errors to `f`
    /// too (`verify` reports them); `f` returns `false` to stop.
    pub(in crate::backend::sim) fn scan_all(
        &self,
        mut f: impl FnMut(Result<(sled::IVec, sled::IVec), sled::Error>) -> bool,
    ) -> Result<(), SimError> {
        self.guard(|| {
            for item in self.inner.iter() {
                if !f(item) {
                    break;
                }
            }
        })
    }

    /// Apply `batch` with the next commit stamp, in memory only: readers see
    /// it at once, a crash may lose it until [`Db::sync`]. sled recovers a
    /// prefix of the applied batches, so a crash never leaves a gap.
    pub(in crate::backend::sim) fn apply(&self, mut batch: sled::Batch) -> Result<u64, SimError> {
        // Callers hold the tenant's `mem` lock (or own it), so stamps are in order.
        let n = self.mark.stamp(&mut batch);
        self.guard(|| self.inner.apply_batch(batch))?
            .map_err(|e| self.storage(e))?;
        self.mark.applied(n);
        Ok(n)
    }

    /// Make every batch applied so far durable (one flush and fsync for all
    /// of them; nothing to do when they already are).
    pub(in crate::backend::sim) fn sync(&self) -> Result<(), SimError> {
        let n = self.mark.last_applied();
        if n <= self.durable.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.guard(|| self.inner.flush())?
            .map_err(|e| self.storage(e))?;
        // sled's flush does not fsync on Linux.
        self.file.sync_all().map_err(|source| SimError::Io {
            path: self.dir.join("db"),
            source,
        })?;
        self.mark.confirm(n);
        self.durable.fetch_max(n, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Flush + fsync rounds done since the store was opened.
    #[cfg(test)]
    pub(in crate::backend::sim) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Every batch applied so far is durable.
    pub(in crate::backend::sim) fn is_durable(&self) -> bool {
        self.mark.last_applied() <= self.durable.load(Ordering::SeqCst)
    }

    /// Apply `batch`, then make it durable.
    pub(in crate::backend::sim) fn apply_durably(
        &self,
        batch: sled::Batch,
    ) -> Result<(), SimError> {
        self.apply(batch)?;
        self.sync()
    }

    /// Apply `writes` (JSON payloads, sealed here with their keys) and the
    /// audit entry atomically, in memory only (see [`Db::apply`]).
    pub(in crate::backend::sim) fn stage(
        &self,
        writes: Writes,
        audit: Option<(u64, &AuditEntry)>,
    ) -> Result<u64, SimError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            let v = integrity::seal(&k, &v);
            batch.insert(k, v);
        }
        if let Some((seq, entry)) = audit {
            let key = audit_key(seq);
            let v = sealed(&key, entry);
            batch.insert(key, v);
        }
        self.apply(batch)
    }

    /// [`Db::stage`], then make it durable (tests edit records this way).
    #[cfg(test)]
    pub(in crate::backend::sim) fn commit(
        &self,
        writes: Writes,
        audit: Option<(u64, &AuditEntry)>,
    ) -> Result<(), SimError> {
        self.stage(writes, audit)?;
        self.sync()
    }

    /// Copy the database into `dest` (a new directory), durably.
    pub(in crate::backend::sim) fn backup_to(&self, dest: &Path) -> Result<u64, SimError> {
        self.guard(|| crate::store::sled_store::copy_db(&self.inner, dest))?
            .map_err(|source| SimError::Io {
                path: dest.to_path_buf(),
                source,
            })
    }
}

/// Run a sled call, turning its panic into [`Damage::Failed`].
fn guard<T>(dir: &Path, f: impl FnOnce() -> T) -> Result<T, SimError> {
    crate::store::sled_store::catch_panic(f).map_err(|panic| {
        SimError::Store(StoreError::Damaged {
            path: dir.to_path_buf(),
            damage: Damage::Failed(panic),
        })
    })
}

/// A GUID-looking string (version 4 layout) from a key.
pub(crate) fn guid(k: Key) -> String {
    let a = k.bits();
    let b = k.int(1).bits();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

pub(crate) fn user_key(upn: &str) -> String {
    format!("u/{}", upn.to_ascii_lowercase())
}

/// Numbers are accepted with or without the leading `+` (like the cmdlets).
pub(crate) fn number_key(number: &str) -> String {
    let n = number.trim();
    if n.starts_with('+') {
        format!("n/{n}")
    } else {
        format!("n/+{n}")
    }
}

pub(in crate::backend::sim) fn audit_key(seq: u64) -> Vec<u8> {
    let mut k = b"a/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(in crate::backend::sim) fn outbox_key(seq: u64) -> Vec<u8> {
    let mut k = b"o/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Sequence number of an `a/` or `o/` key.
pub(in crate::backend::sim) fn audit_seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if key.len() == 10 {
        b.copy_from_slice(&key[2..]);
    }
    u64::from_be_bytes(b)
}

pub(in crate::backend::sim) fn fatal(e: SimError) -> BackendError {
    // A full disk under the simulator is the service failing for a while, not
    // a reason to fail the subject: the call is retried after a pause.
    let kind = if e.is_no_space() {
        ErrorKind::Transient
    } else {
        ErrorKind::Fatal
    };
    BackendError::new(kind, format!("simulated tenant: {e}"))
}

/// Decode a stored record, verifying its checksum (records written before
/// checksums are read unchecked).
pub(in crate::backend::sim) fn parse<T: serde::de::DeserializeOwned>(
    key: impl AsRef<[u8]>,
    bytes: &[u8],
) -> Result<T, SimError> {
    let key = key.as_ref();
    let (json, _) = integrity::open(key, bytes)?;
    serde_json::from_slice(json).map_err(|source| SimError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

/// The stored form of `v` under `key` (JSON sealed with its checksum).
pub(crate) fn sealed<T: serde::Serialize>(key: impl AsRef<[u8]>, v: &T) -> Vec<u8> {
    integrity::seal(key.as_ref(), &to_bytes(v))
}

pub(crate) fn to_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Our records contain only strings, numbers and maps with string keys.
    serde_json::to_vec(v).unwrap_or_default()
}

pub(in crate::backend::sim) fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// UPN of seeded user `i` (1-based).
pub(crate) fn seeded_upn(i: u32) -> String {
    format!("user{i:04}@contoso.com")
}

/// Direct Routing number of seeded user `i` (1-based).
pub(crate) fn seeded_number(i: u32) -> String {
    format!("+1425{i:07}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_sled_call_is_a_damage_error() {
        let dir = Path::new("/tmp/tenant");
        let r: Result<(), SimError> = guard(dir, || panic!("page 7 is torn"));
        let e = r.err();
        assert!(e.as_ref().is_some_and(SimError::is_damage), "{e:?}");
        let text = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("page 7 is torn") && text.contains("/tmp/tenant"),
            "{text}"
        );
        assert_eq!(guard(dir, || 5).ok(), Some(5));
    }
}
