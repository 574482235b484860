//! Durable storage behind a narrow [`Store`] trait.
//!
//! One ordered key space with prefixes (see [`keys`]) so that an instance's event,
//! snapshot and timer change is one atomic batch; [`commit::Committer`] groups many
//! transitions into one batch and one fsync. sled is the engine today
//! ([`sled_store`]); [`memory`] and [`fault`] serve tests.

pub mod commit;
pub mod fault;
pub mod keys;
pub mod latency;
pub mod memory;
pub mod records;
pub mod sled_store;

use std::path::PathBuf;

/// Current on-disk schema version. 2: a transition's events share one record
/// (an array when there are several). Version 1 stores are read as they are and
/// marked 2 on open, so an older portflow refuses them instead of misreading.
pub const SCHEMA_VERSION: u32 = 2;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the state directory.
    #[error("state directory {0} is in use by another portflow process")]
    Locked(PathBuf),
    /// The store is damaged or not a portflow store.
    #[error("state store {path} cannot be used: {reason}")]
    Damaged {
        /// Directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Written by a newer portflow.
    #[error("state store {path} has schema version {found}; this portflow understands up to {SCHEMA_VERSION}")]
    TooNew {
        /// Directory.
        path: PathBuf,
        /// Version found.
        found: u32,
    },
    /// An I/O or engine error.
    #[error("storage error: {0}")]
    Io(String),
    /// A record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Key of the record.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// The commit thread has stopped.
    #[error("the commit thread has stopped")]
    Closed,
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
                reason: format!("unreadable schema version {s:?}"),
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
                    reason: "it holds data but no schema version (not a portflow store?)".into(),
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
