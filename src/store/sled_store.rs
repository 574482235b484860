//! The sled engine (0.34, pinned). sled's `flush` does not fsync on Linux, so
//! [`Store::sync`] also `sync_all`s the data file: an acknowledged write survives
//! power loss, not just a process kill.
//!
//! Opening is where sled 0.34.7 is fragile, so [`open_db`] (used by the engine
//! and by simulated tenants) guards it:
//! - sled writes its only snapshot file *during open*
//!   (`pagecache/snapshot.rs`: `advance_snapshot` → `write_snapshot`, which
//!   writes `snap.<lsn>.generating`, fsyncs it, renames it to `snap.<lsn>` and
//!   only then removes older snapshots). `read_snapshot` takes the
//!   lexically last `snap.*` file, `.generating` ones included, and fails on one
//!   that is empty or fails its CRC. A kill or a full disk during that write
//!   leaves exactly such a file and every later open fails ("Read corrupted
//!   data"). Such a file never served as a snapshot (sled refuses it), and the
//!   older snapshot is still there, so [`set_aside_unfinished_snapshots`] moves
//!   it into `set-aside/` and sled redoes the snapshot from the older one and
//!   the log, as it would have. A complete `.generating` file (valid CRC) is
//!   left alone: sled reads it like any snapshot.
//! - sled panics on some truncated or overwritten data files
//!   (`segment.rs:556` index out of bounds): the panic is caught and reported
//!   as [`Damage::Panicked`].
//! - sled's recovery treats a damaged message in the middle of its log as a
//!   torn end: it zeroes what follows and opens without it, silently. A commit
//!   counter in the store and a mark file beside it ([`CommitMark`]) catch that.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{check_schema, Batch, Damage, Store, StoreError};

/// A sled database in one directory (exclusively locked by this process).
pub struct SledStore {
    db: sled::Db,
    data_file: Option<File>,
    path: PathBuf,
    mark: CommitMark,
    /// Held by batch applies and by [`SledStore::backup_to`], so a backup sees whole batches only.
    writes: Mutex<()>,
}

impl SledStore {
    /// Open (or create) the store in `dir` and check its schema version.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::from_io(dir, e))?;
        let db = open_db(dir, 64 * 1024 * 1024)?;
        let mark = CommitMark::check(dir, &db)?;
        // Opened only for fsync; sled keeps its own handle.
        let data_file = File::open(dir.join("db")).ok();
        let store = SledStore {
            db,
            data_file,
            path: dir.to_path_buf(),
            mark,
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
        copy_db(&self.db, dest).map_err(|e| StoreError::from_io(dest, e))
    }
}

/// Copy every tree of `src` into a new sled database in `dest` and fsync it.
pub fn copy_db(src: &sled::Db, dest: &Path) -> Result<u64, std::io::Error> {
    let err = |e: sled::Error| match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    };
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

/// Open a sled database safely (see the module notes), waiting up to 2 s for
/// a lock this process itself released.
pub fn open_db(dir: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    let ours = CLOSED_HERE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(&canonical(dir)));
    let mut tries = 0;
    loop {
        match open_once(dir, cache_capacity) {
            Err(StoreError::Locked(_)) if ours && tries < 200 => {
                tries += 1;
                crate::clock::pause_real(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn open_once(dir: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    tidy_snapshots(dir)?;
    let opened = catch_panic(|| {
        sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .open()
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) if is_lock_error(&e) => Err(StoreError::Locked(dir.to_path_buf())),
        Ok(Err(e)) => {
            let err = StoreError::from_sled(dir, e);
            if matches!(err, StoreError::NoSpace { .. }) {
                // A snapshot that could not be written is set aside now, so the
                // directory is left as it was before this open.
                if let Err(e) = tidy_snapshots(dir) {
                    tracing::warn!("{}: {e}", dir.display());
                }
            }
            Err(err)
        }
        Err(panic) => Err(StoreError::Damaged {
            path: dir.to_path_buf(),
            damage: Damage::Panicked(panic),
        }),
    }
}

/// Under the store's lock, set aside unfinished snapshot files (logging each).
fn tidy_snapshots(dir: &Path) -> Result<(), StoreError> {
    let Some(_lock) = lock_store(dir)? else {
        return Ok(());
    };
    let moved = set_aside_unfinished_snapshots(dir).map_err(|e| StoreError::from_io(dir, e))?;
    for (from, to) in moved {
        tracing::warn!(
            "{}: set aside {} (an unfinished sled snapshot left by an interrupted open or a \
             full disk; sled writes it again) as {}",
            dir.display(),
            from.display(),
            to.display()
        );
    }
    Ok(())
}

/// Take sled's lock on `<dir>/db` (the same `flock` sled takes), if the file
/// exists: no snapshot file may be touched while another process opens the store.
pub fn lock_store(dir: &Path) -> Result<Option<File>, StoreError> {
    let path = dir.join("db");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::from_io(&path, e)),
    };
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when `file` closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                StoreError::Locked(dir.to_path_buf())
            } else {
                StoreError::from_io(&path, e)
            });
        }
    }
    Ok(Some(file))
}

/// Where unfinished snapshot files go (not named `snap.*`, which sled would read).
pub const SET_ASIDE_DIR: &str = "set-aside";

/// A sled snapshot file in a store directory.
#[derive(Debug)]
pub struct SnapshotFile {
    /// The file.
    pub path: PathBuf,
    /// `snap.<lsn>.generating`: written by an open that did not finish renaming it.
    pub generating: bool,
    /// Length, and whether the CRC sled checks holds.
    pub len: u64,
    /// sled can read it.
    pub valid: bool,
}

/// The `snap.*` files sled would consider, each checked as sled's
/// `read_snapshot` checks it: more than 12 bytes, the last 4 the CRC-32 of all
/// but the last 12.
pub fn snapshot_files(dir: &Path) -> std::io::Result<Vec<SnapshotFile>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // sled's filter: `snap.` prefix, except `.in___motion` files.
        if !name.starts_with("snap.") || name.ends_with(".in___motion") {
            continue;
        }
        let path = entry.path();
        if !entry.file_type()?.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        out.push(SnapshotFile {
            generating: name.ends_with(".generating"),
            len: bytes.len() as u64,
            valid: snapshot_is_valid(&bytes),
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn snapshot_is_valid(bytes: &[u8]) -> bool {
    let len = bytes.len();
    if len <= 12 {
        return false;
    }
    let (body, trailer) = bytes.split_at(len - 12);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&trailer[8..]);
    crc32fast::hash(body) == u32::from_le_bytes(crc)
}

/// Move every `snap.*.generating` file sled could not read into
/// `<dir>/set-aside/`, durably; returns (from, to) of each. The caller holds
/// the store's lock. Nothing is deleted.
pub fn set_aside_unfinished_snapshots(dir: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut moved = Vec::new();
    for snap in snapshot_files(dir)? {
        if !snap.generating || snap.valid {
            continue;
        }
        let aside = dir.join(SET_ASIDE_DIR);
        std::fs::create_dir_all(&aside)?;
        let name = snap
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Numbered, not timestamped: the store never reads the clock.
        let to = (1u32..)
            .map(|n| aside.join(format!("{name}.{n}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| aside.join(name.clone()));
        std::fs::rename(&snap.path, &to)?;
        moved.push((snap.path, to));
    }
    if !moved.is_empty() {
        // The rename must be durable before sled writes a new snapshot.
        File::open(dir)?.sync_all()?;
        File::open(dir.join(SET_ASIDE_DIR))?.sync_all()?;
    }
    Ok(moved)
}

thread_local! {
    /// Set while this thread runs code whose panics are caught and reported.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The message of the panic caught last.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: std::sync::Once = std::sync::Once::new();

/// Run `f`, turning a panic into its message (printed nowhere: it becomes an error).
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let what = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                let at = info.location().map_or(String::new(), |l| {
                    // `…/sled-0.34.7/src/pagecache/segment.rs`, not the whole registry path.
                    let file = l.file();
                    let short = file.find("sled-").map_or(file, |i| &file[i..]);
                    format!(" at {short}:{}", l.line())
                });
                CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{what}{at}")));
            } else {
                previous(info);
            }
        }));
    });
    CATCHING.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    result.map_err(|_| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| "panic".into())
    })
}

/// Key of the commit counter inside a store.
pub const COMMIT_KEY: &[u8] = b"m/commit";
/// File beside sled's files recording the last commit confirmed durable.
pub const MARK_FILE: &str = "portflow.commit";
/// Mark file layout: magic, counter (LE), CRC-32 of both.
const MARK_MAGIC: &[u8; 4] = b"pfc1";

/// Detects writes sled lost. Every batch carries an increasing counter
/// (`m/commit`); after each sync the counter it covered goes into the mark
/// file. The file is written after sled's fsync and never fsynced itself, so
/// it can lag the store (a crash right after a sync) but never lead it: a
/// store whose counter is below its mark has lost confirmed writes.
pub struct CommitMark {
    path: PathBuf,
    file: Mutex<Option<File>>,
    applied: AtomicU64,
    confirmed: AtomicU64,
}

impl std::fmt::Debug for CommitMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitMark")
            .field("path", &self.path)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl CommitMark {
    /// Compare a freshly opened store with its mark file.
    pub fn check(dir: &Path, db: &sled::Db) -> Result<CommitMark, StoreError> {
        let found = stored_commit(db).map_err(|e| StoreError::from_sled(dir, e))?;
        let path = dir.join(MARK_FILE);
        let confirmed = read_mark(&path);
        if let Some(confirmed) = confirmed {
            if found < confirmed {
                return Err(StoreError::Damaged {
                    path: dir.to_path_buf(),
                    damage: Damage::LostWrites { found, confirmed },
                });
            }
        }
        Ok(CommitMark {
            path,
            file: Mutex::new(None),
            applied: AtomicU64::new(found),
            confirmed: AtomicU64::new(confirmed.unwrap_or(0)),
        })
    }

    /// Add the next commit number to `batch` (call with writes serialized); returns it.
    pub fn stamp(&self, batch: &mut sled::Batch) -> u64 {
        let n = self.applied.load(Ordering::SeqCst) + 1;
        batch.insert(COMMIT_KEY, &n.to_le_bytes());
        n
    }

    /// Batch `n` is applied.
    pub fn applied(&self, n: u64) {
        self.applied.fetch_max(n, Ordering::SeqCst);
    }

    /// The last batch applied: a flush started now covers it.
    pub fn last_applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Everything up to `n` is durable: record it. A failure is logged, not
    /// returned: a stale mark only weakens the check, it never fails an open.
    pub fn confirm(&self, n: u64) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if n <= self.confirmed.load(Ordering::SeqCst) {
            return;
        }
        let written = (|| -> std::io::Result<()> {
            if file.is_none() {
                *file = Some(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&self.path)?,
                );
            }
            match file.as_ref() {
                Some(f) => write_mark(f, n),
                None => Ok(()),
            }
        })();
        match written {
            Ok(()) => self.confirmed.store(n, Ordering::SeqCst),
            Err(e) => tracing::warn!("{}: {e}", self.path.display()),
        }
    }
}

/// The commit counter stored in `db` (0 before the first stamped batch).
pub fn stored_commit(db: &sled::Db) -> Result<u64, sled::Error> {
    Ok(db
        .get(COMMIT_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_le_bytes))
}

/// The counter in a mark file; `None` when there is none or it does not parse.
pub fn read_mark(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() != 16 || &bytes[..4] != MARK_MAGIC {
        tracing::warn!("{}: not a commit mark; ignored", path.display());
        return None;
    }
    let (body, crc) = bytes.split_at(12);
    if crc32fast::hash(body).to_le_bytes() != crc {
        tracing::warn!("{}: damaged commit mark; ignored", path.display());
        return None;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&body[4..]);
    Some(u64::from_le_bytes(n))
}

fn write_mark(f: &File, n: u64) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(16);
    buf.extend_from_slice(MARK_MAGIC);
    buf.extend_from_slice(&n.to_le_bytes());
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    // One 16-byte write at offset 0: a kill cannot leave half of it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&buf, 0)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, Write};
        let mut f = f;
        f.seek(std::io::SeekFrom::Start(0))?;
        f.write_all(&buf)
    }
}

impl SledStore {
    fn engine(&self, e: sled::Error) -> StoreError {
        StoreError::from_sled(&self.path, e)
    }

    /// Run a sled call, turning its panic (sled panics on some damaged pages
    /// instead of returning an error) into a damage report.
    fn guard<T>(&self, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        catch_panic(f).map_err(|panic| StoreError::Damaged {
            path: self.path.clone(),
            damage: Damage::Failed(panic),
        })
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .guard(|| self.db.get(key))?
            .map_err(|e| self.engine(e))?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut items = self.guard(|| self.db.scan_prefix(prefix))?;
        // Only sled's part is guarded: a panic in `visit` is a bug, not damage.
        while let Some(item) = self.guard(|| items.next())? {
            let (k, v) = item.map_err(|e| self.engine(e))?;
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
        let n = self.mark.stamp(&mut b);
        self.guard(|| self.db.apply_batch(b))?
            .map_err(|e| self.engine(e))?;
        self.mark.applied(n);
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        // No `writes` lock: a backup needs whole batches, not synced ones, and
        // syncing must not hold up the next group's apply.
        let covered = self.mark.last_applied();
        self.guard(|| self.db.flush())?
            .map_err(|e| self.engine(e))?;
        if let Some(f) = &self.data_file {
            f.sync_all()
                .map_err(|e| StoreError::from_io(&self.path.join("db"), e))?;
        }
        self.mark.confirm(covered);
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

    fn put_some(s: &SledStore, from: u32, n: u32) {
        for i in from..from + n {
            let mut b = Batch::default();
            b.put(format!("k{i:05}").into_bytes(), vec![7u8; 100]);
            s.apply(&b).expect("apply");
        }
        s.sync().expect("sync");
    }

    #[test]
    fn an_unreadable_generating_snapshot_is_set_aside_and_a_readable_one_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open(dir.path()).expect("open");
            put_some(&s, 0, 50);
        }
        {
            // This open writes a snapshot of the first 50; then 50 more go to the log.
            let s = SledStore::open(dir.path()).expect("reopen");
            put_some(&s, 50, 50);
        }
        let snaps = snapshot_files(dir.path()).expect("list");
        assert_eq!(snaps.len(), 1, "{snaps:?}");
        assert!(snaps[0].valid && !snaps[0].generating);
        let good = std::fs::read(&snaps[0].path).expect("read");
        // What an open killed while writing its snapshot leaves, empty or cut short.
        for (name, bytes) in [
            ("snap.00000000FFFFFF00.generating", Vec::new()),
            (
                "snap.00000000FFFFFF01.generating",
                good[..good.len() / 2].to_vec(),
            ),
        ] {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        let s = SledStore::open(dir.path()).expect("opens after setting them aside");
        assert_eq!(
            s.get(b"k00099").expect("get"),
            Some(vec![7u8; 100]),
            "nothing lost"
        );
        drop(s);
        let aside = std::fs::read_dir(dir.path().join(SET_ASIDE_DIR))
            .expect("set-aside")
            .count();
        assert_eq!(aside, 2, "both kept, not deleted");
        assert!(snapshot_files(dir.path())
            .expect("list")
            .iter()
            .all(|f| f.valid));

        // A complete `.generating` (its CRC holds) is what sled reads: left alone.
        let name = "snap.00000000FFFFFF02.generating";
        std::fs::write(dir.path().join(name), &good).expect("write");
        let moved = set_aside_unfinished_snapshots(dir.path()).expect("set aside");
        assert!(moved.is_empty(), "{moved:?}");
        assert!(dir.path().join(name).exists());
    }

    #[test]
    fn the_commit_mark_catches_a_store_that_lost_confirmed_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open(dir.path()).expect("open");
            put_some(&s, 0, 10);
        }
        let mark = dir.path().join(MARK_FILE);
        let confirmed = read_mark(&mark).expect("a mark after syncs");
        assert!(confirmed >= 11, "schema + 10 batches: {confirmed}");
        drop(SledStore::open(dir.path()).expect("a consistent store opens"));
        // The mark says more was confirmed than the store holds: writes were lost.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&mark)
            .expect("mark");
        write_mark(&f, confirmed + 5).expect("write mark");
        drop(f);
        let err = SledStore::open(dir.path()).err();
        assert!(
            matches!(
                err,
                Some(StoreError::Damaged {
                    damage: Damage::LostWrites { .. },
                    ..
                })
            ),
            "{err:?}"
        );
        // A mark that does not parse is ignored (it only ever weakens the check).
        std::fs::write(&mark, b"garbage").expect("write");
        drop(SledStore::open(dir.path()).expect("opens"));
        std::fs::remove_file(&mark).expect("rm");
        let s = SledStore::open(dir.path()).expect("opens without a mark");
        put_some(&s, 10, 1);
        assert!(read_mark(&mark).is_some_and(|n| n > confirmed));
    }

    #[test]
    fn a_panic_is_caught_as_its_message_and_location() {
        let r: Result<(), String> = catch_panic(|| {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            let _ = v[i];
        });
        let msg = r.err().unwrap_or_default();
        assert!(msg.contains("index out of bounds"), "{msg}");
        assert!(msg.contains("sled_store.rs:"), "{msg}");
        assert_eq!(catch_panic(|| 5), Ok(5));
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
