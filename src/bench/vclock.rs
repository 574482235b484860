//! Discrete-event time for benchmarks: a wave with 24-hour sync delays runs in
//! seconds, and its virtual makespan does not depend on how fast the machine is.
//!
//! [`VirtualClock`] only moves when told to. [`run_virtual`] runs a future on a
//! single-threaded tokio runtime whose park hook moves the clock to the earliest
//! pending sleep whenever nothing can run: no task is ready, no commit is
//! waiting for its fsync and no backend call is in flight. Engine CPU and I/O
//! thus take zero virtual time; the engine's own speed is what the transitions
//! benchmark measures.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::clock::{Clock, Sleep, Timestamp};

/// A clock that jumps from one pending deadline to the next.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<Timestamp>,
    /// Deadline → number of sleepers waiting for it.
    sleepers: Mutex<BTreeMap<Timestamp, usize>>,
    changed: Notify,
    jumps: AtomicU64,
}

impl VirtualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Arc<VirtualClock> {
        Arc::new(VirtualClock {
            now: Mutex::new(start),
            sleepers: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            jumps: AtomicU64::new(0),
        })
    }

    /// Move to the earliest deadline anyone sleeps on and wake the sleepers;
    /// `false` when nobody sleeps.
    pub fn advance_to_next(&self) -> bool {
        let next = {
            let s = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
            s.keys().next().copied()
        };
        let Some(t) = next else {
            return false;
        };
        {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            if t > *now {
                *now = t;
            }
        }
        self.jumps.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        true
    }

    /// How often the clock moved.
    pub fn jumps(&self) -> u64 {
        self.jumps.load(Ordering::Relaxed)
    }

    fn register(&self, t: Timestamp) {
        let mut s = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
        *s.entry(t).or_insert(0) += 1;
    }

    fn unregister(&self, t: Timestamp) {
        let mut s = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = s.get_mut(&t) {
            *n -= 1;
            if *n == 0 {
                s.remove(&t);
            }
        }
    }
}

/// Keeps a sleeper's deadline registered until the sleep ends or is dropped.
struct Registered<'a> {
    clock: &'a VirtualClock,
    at: Timestamp,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.clock.unregister(self.at);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep<'_> {
        Box::pin(async move {
            if self.now() >= t {
                return;
            }
            self.register(t);
            let _registered = Registered { clock: self, at: t };
            loop {
                // Created before the check, so a jump in between still wakes us.
                let notified = self.changed.notified();
                if self.now() >= t {
                    return;
                }
                notified.await;
            }
        })
    }

    fn scale(&self) -> f64 {
        // Not meaningful for a jumping clock; reported as "virtual".
        0.0
    }
}

/// Run `fut` to completion on a single-threaded runtime driven by `clock`:
/// whenever the runtime is about to go idle and `busy()` is false, the clock
/// jumps to the next deadline. `busy` must report work that will wake the
/// runtime from another thread (commits awaiting their fsync, backend calls
/// on the blocking pool).
pub fn run_virtual<F>(
    clock: Arc<VirtualClock>,
    busy: impl Fn() -> bool + Send + Sync + 'static,
    fut: F,
) -> std::io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let c = clock.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .on_thread_park(move || {
            if !busy() {
                c.advance_to_next();
            }
        })
        .build()?;
    // As a spawned task (not the block_on future itself) so that waking it from
    // the park hook schedules it on the local queue and keeps the thread awake.
    let handle = rt.spawn(fut);
    rt.block_on(handle)
        .map_err(|e| std::io::Error::other(format!("benchmark task failed: {e}")))
}

/// A counter of operations in flight, for `busy` predicates.
#[derive(Debug, Default)]
pub struct InFlight(AtomicU64);

impl InFlight {
    /// Count one in; it is counted out when the guard drops.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Operations in flight now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// See [`InFlight::enter`].
pub struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sleepers_wake_in_order_without_real_waiting() {
        let clock = VirtualClock::new(Timestamp(0));
        let c = clock.clone();
        let out = run_virtual(clock.clone(), || false, async move {
            let mut set = tokio::task::JoinSet::new();
            for h in [24u64, 1, 6] {
                let c = c.clone();
                set.spawn(async move {
                    c.sleep_until(Timestamp(0).plus(Duration::from_secs(h * 3600)))
                        .await;
                    (h, c.now())
                });
            }
            let mut woke = Vec::new();
            while let Some(Ok(r)) = set.join_next().await {
                woke.push(r);
            }
            woke
        });
        let woke = out.unwrap_or_default();
        assert_eq!(woke.len(), 3);
        for (h, at) in woke {
            assert_eq!(at, Timestamp((h * 3600 * 1000) as i64));
        }
        assert_eq!(clock.jumps(), 3);
    }

    #[test]
    fn the_clock_waits_while_busy() {
        let clock = VirtualClock::new(Timestamp(0));
        let inflight = Arc::new(InFlight::default());
        let busy = inflight.clone();
        let c = clock.clone();
        let out = run_virtual(clock.clone(), move || busy.get() > 0, async move {
            let sleeper = {
                let c = c.clone();
                tokio::spawn(async move { c.sleep_until(Timestamp(1000)).await })
            };
            // Real work on another thread: time must not move meanwhile.
            let before = c.now();
            let guard = inflight.enter();
            let done = tokio::task::spawn_blocking(|| {
                std::thread::sleep(Duration::from_millis(20));
            })
            .await;
            let after = c.now();
            drop(guard);
            let _ = sleeper.await;
            (before, after, done.is_ok(), c.now())
        });
        let (before, after, ok, end) =
            out.unwrap_or((Timestamp(1), Timestamp(1), false, Timestamp(0)));
        assert!(ok);
        assert_eq!((before, after), (Timestamp(0), Timestamp(0)));
        assert_eq!(end, Timestamp(1000));
    }
}
