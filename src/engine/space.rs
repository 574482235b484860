//! The free-space guard (`--min-free`): while the disk holding the state
//! directory has less free space than the minimum, no new outage-causing step
//! starts. A subject taken out of service needs many more commits before it is
//! back (waits, polls, the restoring steps); starting one that a full disk
//! would then strand is the harm to avoid. Subjects already out of service go
//! on; held ones start again when space is back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::machine::OutageGate;

/// Default `--min-free`: 256 MiB.
pub const DEFAULT_MIN_FREE: u64 = 256 * 1024 * 1024;

/// Start of the reason held subjects show (also how a restart recognises them).
pub const REASON_PREFIX: &str = "low disk space:";

/// Free bytes of the file system holding a directory.
pub trait FreeSpace: Send + Sync + std::fmt::Debug {
    /// Bytes an unprivileged process may still write under `dir`.
    fn free(&self, dir: &Path) -> std::io::Result<u64>;
}

/// `statvfs(2)`.
#[derive(Debug, Default)]
pub struct Statvfs;

impl FreeSpace for Statvfs {
    fn free(&self, dir: &Path) -> std::io::Result<u64> {
        free_bytes(dir)
    }
}

/// Free bytes (`f_bavail × f_frsize`) of the file system holding `dir`.
#[cfg(unix)]
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Free bytes: unknown off Unix (the guard then never holds anyone).
#[cfg(not(unix))]
pub fn free_bytes(_dir: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}

/// The guard of one run: the directories it writes and the minimum.
#[derive(Debug)]
pub struct SpaceGuard {
    dirs: Vec<PathBuf>,
    min_free: u64,
    probe: Arc<dyn FreeSpace>,
    /// Instances this guard holds.
    held: Mutex<BTreeSet<u32>>,
}

impl SpaceGuard {
    /// A guard over `dirs` (the engine store, the run's simulated tenant).
    pub fn new(dirs: Vec<PathBuf>, min_free: u64) -> SpaceGuard {
        SpaceGuard::with_probe(dirs, min_free, Arc::new(Statvfs))
    }

    /// A guard measuring with `probe` (tests).
    pub fn with_probe(dirs: Vec<PathBuf>, min_free: u64, probe: Arc<dyn FreeSpace>) -> SpaceGuard {
        SpaceGuard {
            dirs,
            min_free,
            probe,
            held: Mutex::new(BTreeSet::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why no outage step may start now (`None`: there is room). The text
    /// does not change with the amount free, so a subject woken while space
    /// is still short stays held without a new history entry.
    pub fn short(&self) -> Option<String> {
        if self.min_free == 0 {
            return None;
        }
        for dir in &self.dirs {
            match self.probe.free(dir) {
                Ok(free) if free < self.min_free => {
                    return Some(format!(
                        "{REASON_PREFIX} the file system holding {} has less than {} free \
                         (--min-free); no new outage step starts until there is room",
                        dir.display(),
                        human_bytes(self.min_free)
                    ))
                }
                Ok(_) => {}
                // A directory not created yet, or no statvfs: nothing to measure.
                Err(e) => tracing::debug!("free space of {}: {e}", dir.display()),
            }
        }
        None
    }

    /// Count instance `idx` as held by this guard (found held after a restart).
    pub fn note_held(&self, idx: u32) {
        self.lock().insert(idx);
    }

    /// Instances held here that may try again now: all of them once there is room.
    pub fn wakeable(&self) -> Vec<u32> {
        if self.lock().is_empty() || self.short().is_some() {
            return Vec::new();
        }
        std::mem::take(&mut *self.lock()).into_iter().collect()
    }

    /// Instances held here.
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    /// The minimum, in bytes.
    pub fn min_free(&self) -> u64 {
        self.min_free
    }
}

impl OutageGate for SpaceGuard {
    fn admit(&self, idx: u32) -> Result<(), String> {
        match self.short() {
            Some(why) => {
                self.lock().insert(idx);
                Err(why)
            }
            None => {
                self.lock().remove(&idx);
                Ok(())
            }
        }
    }
}

/// The run's gates in the order they are asked: free space first, so the
/// budget never reserves a place for a subject the disk then holds.
#[derive(Debug)]
pub struct Gates<'a> {
    /// The free-space guard.
    pub space: Option<&'a SpaceGuard>,
    /// The out-of-service budget and breaker.
    pub budget: Option<&'a dyn OutageGate>,
}

impl Gates<'_> {
    /// Whether any gate is set.
    pub fn any(&self) -> bool {
        self.space.is_some() || self.budget.is_some()
    }
}

impl OutageGate for Gates<'_> {
    fn admit(&self, idx: u32) -> Result<(), String> {
        if let Some(s) = self.space {
            s.admit(idx)?;
        }
        match self.budget {
            Some(b) => b.admit(idx),
            None => Ok(()),
        }
    }
}

/// Parse a size: `256MiB`, `1GiB`, `500MB`, `4096`, `0` (binary and decimal units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write e.g. 256MiB, 1GiB or 0)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
            "unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
        ))
        }
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// `268435456` → `256 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Fake(AtomicU64);

    impl FreeSpace for Fake {
        fn free(&self, _: &Path) -> std::io::Result<u64> {
            Ok(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn holds_below_the_minimum_and_wakes_everyone_held_when_space_is_back() {
        let probe = Arc::new(Fake(AtomicU64::new(100 << 20)));
        let g = SpaceGuard::with_probe(vec!["/state/engine".into()], 256 << 20, probe.clone());
        let why = g.admit(3).err().unwrap_or_default();
        assert!(why.starts_with(REASON_PREFIX), "{why}");
        assert!(
            why.contains("/state/engine") && why.contains("256 MiB"),
            "{why}"
        );
        probe.0.store(50 << 20, Ordering::SeqCst);
        assert_eq!(
            g.admit(3).err(),
            Some(why),
            "the reason does not change with the amount"
        );
        g.note_held(1);
        assert_eq!(g.held(), 2);
        assert!(g.wakeable().is_empty(), "still short");
        probe.0.store(300 << 20, Ordering::SeqCst);
        assert_eq!(g.wakeable(), vec![1, 3]);
        assert_eq!(g.held(), 0);
        assert!(g.admit(3).is_ok());
    }

    #[test]
    fn the_space_gate_is_asked_before_the_budget_so_no_place_leaks() {
        #[derive(Debug, Default)]
        struct Counting(Mutex<Vec<u32>>);
        impl OutageGate for Counting {
            fn admit(&self, idx: u32) -> Result<(), String> {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).push(idx);
                Ok(())
            }
        }
        let probe = Arc::new(Fake(AtomicU64::new(0)));
        let space = SpaceGuard::with_probe(vec!["/s".into()], 1, probe.clone());
        let budget = Counting::default();
        let gates = Gates {
            space: Some(&space),
            budget: Some(&budget),
        };
        assert!(gates.admit(7).is_err());
        assert!(budget.0.lock().map(|v| v.is_empty()).unwrap_or(false));
        probe.0.store(10, Ordering::SeqCst);
        assert!(gates.admit(7).is_ok());
        assert_eq!(
            budget.0.lock().map(|v| v.clone()).unwrap_or_default(),
            vec![7]
        );
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }

    #[test]
    fn statvfs_reports_something_for_an_existing_directory() {
        assert!(free_bytes(Path::new(".")).is_ok());
        assert!(free_bytes(Path::new("/no/such/dir/here")).is_err());
    }
}
