//! The sled engine (0.34, pinned). sled's `flush` does not fsync on Linux, so
//! [`Store::sync`] also `sync_all`s the data file: an acknowledged write survives
//! power loss, not just a process kill.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{check_schema, Batch, Store, StoreError};

/// A sled database in one directory (exclusively locked by this process).
pub struct SledStore {
    db: sled::Db,
    data_file: Option<File>,
    path: PathBuf,
    /// Held by batch applies and by [`SledStore::backup_to`], so a backup sees whole batches only.
    writes: Mutex<()>,
}

impl SledStore {
    /// Open (or create) the store in `dir` and check its schema version.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        let db = open_db(dir, 64 * 1024 * 1024).map_err(|e| classify(dir, e))?;
        // Opened only for fsync; sled keeps its own handle.
        let data_file = File::open(dir.join("db")).ok();
        let store = SledStore {
            db,
            data_file,
            path: dir.to_path_buf(),
            writes: Mutex::new(()),
        };
        check_schema(&store, dir)?;
        Ok(store)
    }

    /// Directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copy the whole store into a new sled database in `dest` (which must not
    /// exist), durably. Writes wait meanwhile, so the copy is one consistent
    /// instant of the store. Returns the number of keys copied.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, StoreError> {
        let _writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        copy_db(&self.db, dest).map_err(|e| StoreError::Io(format!("{}: {e}", dest.display())))
    }
}

/// Copy every tree of `src` into a new sled database in `dest` and fsync it.
pub fn copy_db(src: &sled::Db, dest: &Path) -> Result<u64, std::io::Error> {
    let err = |e: sled::Error| std::io::Error::other(e.to_string());
    if dest.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "already exists; back up into a new directory",
        ));
    }
    std::fs::create_dir_all(dest)?;
    let out = sled::Config::new().path(dest).open().map_err(err)?;
    let mut keys = 0u64;
    for name in src.tree_names() {
        let from = src.open_tree(&name).map_err(err)?;
        let to = out.open_tree(&name).map_err(err)?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in from.iter() {
            let (k, v) = kv.map_err(err)?;
            batch.insert(k, v);
            n += 1;
            if n == 10_000 {
                to.apply_batch(std::mem::take(&mut batch)).map_err(err)?;
                keys += n;
                n = 0;
            }
        }
        to.apply_batch(batch).map_err(err)?;
        keys += n;
    }
    out.flush().map_err(err)?;
    File::open(dest.join("db"))?.sync_all()?;
    Ok(keys)
}

impl Drop for SledStore {
    fn drop(&mut self) {
        closed(&self.path);
    }
}

/// Directories whose sled handle this process has dropped. sled releases its
/// file lock only when its background threads let go, a moment after the drop,
/// so reopening such a directory in the same process retries briefly; a lock
/// held by another process still fails at once.
static CLOSED_HERE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Record that this process closed its handle on `dir`.
pub fn closed(dir: &Path) {
    let mut set = CLOSED_HERE.lock().unwrap_or_else(|p| p.into_inner());
    set.get_or_insert_with(HashSet::new).insert(canonical(dir));
}

/// True for sled's "could not acquire lock" error.
pub fn is_lock_error(e: &sled::Error) -> bool {
    let msg = e.to_string();
    msg.contains("could not acquire lock") || msg.contains("WouldBlock")
}

/// Open a sled database, waiting up to 2 s for a lock this process itself released.
pub fn open_db(dir: &Path, cache_capacity: u64) -> Result<sled::Db, sled::Error> {
    let ours = CLOSED_HERE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(&canonical(dir)));
    let mut tries = 0;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .open()
        {
            Err(e) if ours && is_lock_error(&e) && tries < 200 => {
                tries += 1;
                crate::clock::pause_real(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn classify(dir: &Path, e: sled::Error) -> StoreError {
    let msg = e.to_string();
    if is_lock_error(&e) {
        StoreError::Locked(dir.to_path_buf())
    } else if matches!(
        e,
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_)
    ) {
        StoreError::Damaged {
            path: dir.to_path_buf(),
            reason: msg,
        }
    } else {
        StoreError::Io(format!("{}: {msg}", dir.display()))
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for item in self.db.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let _writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let mut b = sled::Batch::default();
        for (k, v) in &batch.ops {
            match v {
                Some(v) => b.insert(k.as_slice(), v.as_slice()),
                None => b.remove(k.as_slice()),
            }
        }
        self.db.apply_batch(b).map_err(io)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // No `writes` lock: a backup needs whole batches, not synced ones, and
        // syncing must not hold up the next group's apply.
        self.db.flush().map_err(io)?;
        if let Some(f) = &self.data_file {
            f.sync_all()
                .map_err(|e| StoreError::Io(format!("fsync {}: {e}", self.path.display())))?;
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_reports_locked_and_data_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open(dir.path()).expect("open");
            let again = SledStore::open(dir.path());
            assert!(
                matches!(again, Err(StoreError::Locked(_))),
                "{:?}",
                again.err()
            );
            let mut b = Batch::default();
            b.put(b"k".to_vec(), b"v".to_vec());
            s.apply(&b).expect("apply");
            s.sync().expect("sync");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.get(b"k").expect("get"), Some(b"v".to_vec()));
    }

    #[test]
    fn marks_a_schema_1_store_as_2_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open(dir.path()).expect("open");
            let mut b = Batch::default();
            b.put(super::super::keys::SCHEMA.to_vec(), b"1".to_vec());
            s.apply(&b).expect("apply");
            s.sync().expect("sync");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        let v = s.get(super::super::keys::SCHEMA).expect("get");
        assert_eq!(
            v,
            Some(super::super::SCHEMA_VERSION.to_string().into_bytes())
        );
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open(dir.path()).expect("open");
            let mut b = Batch::default();
            b.put(super::super::keys::SCHEMA.to_vec(), b"99".to_vec());
            s.apply(&b).expect("apply");
            s.sync().expect("sync");
        }
        let err = SledStore::open(dir.path()).err();
        assert!(
            matches!(err, Some(StoreError::TooNew { found: 99, .. })),
            "{err:?}"
        );
    }
}
