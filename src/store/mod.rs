//! Durable storage behind a narrow [`Store`] trait.
//!
//! One ordered key space with prefixes (see [`keys`]) so that an instance's event,
//! snapshot and timer change is one atomic batch; [`commit::Committer`] groups many
//! transitions into one batch and one fsync. sled is the engine today
//! ([`sled_store`]); [`memory`] and [`fault`] serve tests.

pub mod commit;
pub mod fault;
pub mod integrity;
pub mod keys;
pub mod latency;
pub mod memory;
pub mod records;
pub mod sled_store;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

/// Current on-disk schema version. 2: a transition's events share one record
/// (an array when there are several). 3: records carry a checksum
/// ([`integrity`]). Older stores are read as they are (unchecked records stay
/// readable) and marked 3 on open, so an older portflow refuses them instead of
/// misreading.
pub const SCHEMA_VERSION: u32 = 3;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the state directory.
    #[error("state directory {0} is in use by another portflow process")]
    Locked(PathBuf),
    /// The store will not open, or holds something it must not.
    #[error("state store {} is damaged: {damage}", path.display())]
    Damaged {
        /// Directory.
        path: PathBuf,
        /// What is wrong.
        #[source]
        damage: Damage,
    },
    /// Written by a newer portflow.
    #[error("state store {} has schema version {found}; this portflow understands up to {SCHEMA_VERSION}", path.display())]
    TooNew {
        /// Directory.
        path: PathBuf,
        /// Version found.
        found: u32,
    },
    /// The file system holding the store is full (or over quota).
    #[error("the disk holding {} is full: {source}", path.display())]
    NoSpace {
        /// Directory.
        path: PathBuf,
        /// The failed write.
        #[source]
        source: std::io::Error,
    },
    /// sled failed.
    #[error("state store {}: {source}", path.display())]
    Engine {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: sled::Error,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    File {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A failure injected by [`fault::FaultyStore`].
    #[error("injected failure: {0}")]
    Injected(&'static str),
    /// A record could not be encoded (a bug: portflow's own types always
    /// serialize); nothing was written.
    #[error("cannot encode the record {key}: {reason}")]
    Encode {
        /// Its key.
        key: String,
        /// What serde said.
        reason: String,
    },
    /// A record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Key of the record.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// A record's checksum does not match its bytes.
    #[error("record {key} is damaged: its checksum does not match (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Key of the record.
        key: String,
        /// Checksum stored with it.
        stored: u32,
        /// Checksum of what was read.
        computed: u32,
    },
    /// A write failed earlier; the commit thread acknowledges nothing after it.
    #[error("{0}")]
    Commit(#[source] Arc<StoreError>),
    /// The commit thread has stopped.
    #[error("the commit thread has stopped")]
    Closed,
}

/// What is wrong with a damaged store.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// sled reports corrupted data (at open, or reading a page).
    #[error("{}", unreadable(.0))]
    Unreadable(#[source] sled::Error),
    /// sled panicked while opening it (a truncated or overwritten data file).
    #[error("sled failed while opening it ({0}); its data file is truncated or overwritten")]
    Panicked(String),
    /// sled panicked reading or writing it (a damaged page found after open).
    #[error("sled failed while using it ({0}); its data file is damaged")]
    Failed(String),
    /// sled opened it, but without writes that had been confirmed durable:
    /// its recovery stopped early at damaged data, or the data file lost its end.
    #[error(
        "it has lost writes it had confirmed as durable (it ends at commit {found}, \
         commit {confirmed} was confirmed)"
    )]
    LostWrites {
        /// Last commit found in the store.
        found: u64,
        /// Last commit confirmed durable (from the commit mark file).
        confirmed: u64,
    },
    /// Not a portflow store, or an unreadable schema version.
    #[error("{0}")]
    Foreign(String),
}

/// sled's corruption error in words (its own text ends in "backtrace ()").
fn unreadable(e: &sled::Error) -> String {
    match e {
        sled::Error::Corruption { at: Some(at), .. } => {
            format!("sled finds corrupted data in it (at {at:?})")
        }
        sled::Error::Corruption { at: None, .. } => {
            "sled finds corrupted data in it (a damaged snapshot or log)".into()
        }
        other => format!("sled cannot read it: {other}"),
    }
}

impl StoreError {
    /// The failure itself, past the commit thread's wrapper.
    pub fn root(&self) -> &StoreError {
        match self {
            StoreError::Commit(inner) => inner.root(),
            other => other,
        }
    }

    /// True when the store is damaged (restoring a backup is the way out).
    pub fn is_damage(&self) -> bool {
        matches!(
            self.root(),
            StoreError::Damaged { .. } | StoreError::Corrupt { .. } | StoreError::Checksum { .. }
        )
    }

    /// The error for a sled failure on the store in `path`: a full disk and
    /// corrupted data are told apart from other failures.
    pub fn from_sled(path: &std::path::Path, e: sled::Error) -> StoreError {
        if let sled::Error::Io(io) = &e {
            if is_no_space(io) {
                // sled keeps only the kind (and the OS error as text): say it plainly.
                let code = if io.kind() == std::io::ErrorKind::QuotaExceeded {
                    libc::EDQUOT
                } else {
                    io.raw_os_error().unwrap_or(libc::ENOSPC)
                };
                return StoreError::NoSpace {
                    path: path.to_path_buf(),
                    source: std::io::Error::from_raw_os_error(code),
                };
            }
        }
        if matches!(e, sled::Error::Corruption { .. }) {
            return StoreError::Damaged {
                path: path.to_path_buf(),
                damage: Damage::Unreadable(e),
            };
        }
        StoreError::Engine {
            path: path.to_path_buf(),
            source: e,
        }
    }

    /// The error for a failed file operation on `path`.
    pub fn from_io(path: &std::path::Path, e: std::io::Error) -> StoreError {
        if is_no_space(&e) {
            StoreError::NoSpace {
                path: path.to_path_buf(),
                source: e,
            }
        } else {
            StoreError::File {
                path: path.to_path_buf(),
                source: e,
            }
        }
    }
}

/// ENOSPC or EDQUOT (sled wraps the OS error, keeping its kind).
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// An atomic group of writes (`None` deletes).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Writes in order; a later write to the same key wins.
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Set `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }
    /// Delete `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// Append another batch.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
    /// Payload bytes (keys + values).
    pub fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// The storage engine contract.
pub trait Store: Send + Sync + 'static {
    /// Read one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visit keys starting with `prefix` in order; the visitor returns `false` to stop.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Apply a batch atomically (all or nothing); not yet durable.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Make everything applied so far durable (survives SIGKILL and power loss).
    fn sync(&self) -> Result<(), StoreError>;
    /// Bytes used on disk, if known.
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}

/// Check or write the schema version on a freshly opened store.
pub fn check_schema(store: &dyn Store, path: &std::path::Path) -> Result<(), StoreError> {
    match store.get(keys::SCHEMA)? {
        Some(v) => {
            let s = String::from_utf8_lossy(&v);
            let found: u32 = s.trim().parse().map_err(|_| StoreError::Damaged {
                path: path.to_path_buf(),
                damage: Damage::Foreign(format!("unreadable schema version {s:?}")),
            })?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                });
            }
            if found < SCHEMA_VERSION {
                let mut b = Batch::default();
                b.put(
                    keys::SCHEMA.to_vec(),
                    SCHEMA_VERSION.to_string().into_bytes(),
                );
                store.apply(&b)?;
                store.sync()?;
            }
            Ok(())
        }
        None => {
            let mut any = false;
            store.scan_prefix(b"", &mut |_, _| {
                any = true;
                false
            })?;
            if any {
                return Err(StoreError::Damaged {
                    path: path.to_path_buf(),
                    damage: Damage::Foreign(
                        "it holds data but no schema version (not a portflow store?)".into(),
                    ),
                });
            }
            let mut b = Batch::default();
            b.put(
                keys::SCHEMA.to_vec(),
                SCHEMA_VERSION.to_string().into_bytes(),
            );
            store.apply(&b)?;
            store.sync()
        }
    }
}
