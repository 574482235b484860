//! Time. Nothing outside this module reads the system clock or sleeps directly:
//! the engine and the simulator take a [`Clock`], so tests can run a 24-hour wait
//! in milliseconds and a simulated wave can run at `time_scale` × real time.
#![allow(clippy::disallowed_methods)] // the one module that reads the wall clock

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// An absolute UTC instant, in milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339 form, millisecond precision, UTC.
    pub fn rfc3339(self) -> String {
        let t = if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH
        };
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// Parse an RFC 3339 instant such as `2026-11-23T02:00:00Z`.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, humantime::TimestampError> {
        let t = humantime::parse_rfc3339_weak(s)?;
        Ok(Timestamp(system_time_millis(t)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

fn system_time_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_millis().min(i64::MAX as u128) as i64),
    }
}

/// Deserialize a humantime duration (`10m`, `24h`, `14d`, `1h30m`).
pub fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// [`duration`] for an optional field (`#[serde(default, deserialize_with = …)]`).
pub fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Parse a humantime duration with a message fit for users.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. 30s, 10m, 24h, 14d)"))
}

/// A duration the way users write one: `31d`, `24h`, `90s`; in whole days,
/// hours, minutes or seconds when it is one, else as humantime prints it.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        return humantime::format_duration(d).to_string();
    }
    // `24h` reads better than `1d`.
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s % len == 0 && (unit != "d" || s > 86_400) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

/// Boxed future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The source of time for the engine and the simulator.
pub trait Clock: Send + Sync + 'static {
    /// The current instant (virtual for scaled and manual clocks).
    fn now(&self) -> Timestamp;
    /// Resolves once `now() >= t`.
    fn sleep_until(&self, t: Timestamp) -> Sleep<'_>;
    /// How many virtual seconds pass per real second (1 for the system clock).
    fn scale(&self) -> f64 {
        1.0
    }
    /// Resolves once `d` has passed on this clock: a backend call's deadline.
    /// A clock running faster than real time also waits `d` of real time,
    /// because calls take real time and a fast clock does not speed them up.
    fn call_deadline(&self, d: Duration) -> Sleep<'_> {
        self.sleep_until(self.now().plus(d))
    }
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// Real wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(system_time_millis(SystemTime::now()))
    }
    fn sleep_until(&self, t: Timestamp) -> Sleep<'_> {
        let wait = t.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Virtual time running `scale` times faster than real time from an anchor.
///
/// A run stores its anchor, so after a crash and restart virtual time continues
/// from real time: an outage of 1 s at scale 600 is 10 virtual minutes, exactly as
/// a real outage would let the tenant move on without us.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaledClock {
    /// Real instant of the anchor (ms since epoch).
    pub real_anchor: Timestamp,
    /// Virtual instant at the anchor.
    pub virtual_anchor: Timestamp,
    /// Virtual seconds per real second (> 0).
    pub scale: f64,
}

impl ScaledClock {
    /// A clock whose virtual time equals real time now and then runs `scale`× faster.
    pub fn starting_now(scale: f64) -> ScaledClock {
        let now = SystemClock.now();
        ScaledClock {
            real_anchor: now,
            virtual_anchor: now,
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
        }
    }

    fn real_now(&self) -> Timestamp {
        SystemClock.now()
    }

    /// The real instant at which this clock showed the virtual instant `t`
    /// (a rehearsal's history is on virtual time; reports give real time).
    pub fn real_of(&self, t: Timestamp) -> Timestamp {
        let virtual_elapsed = (t.0 - self.virtual_anchor.0) as f64;
        Timestamp(self.real_anchor.0 + (virtual_elapsed / self.scale).round() as i64)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let real_elapsed = (self.real_now().0 - self.real_anchor.0) as f64;
        Timestamp(self.virtual_anchor.0 + (real_elapsed * self.scale) as i64)
    }
    fn sleep_until(&self, t: Timestamp) -> Sleep<'_> {
        let virtual_wait = t.since(self.now());
        let real = virtual_wait.as_secs_f64() / self.scale;
        // Round up so a sleeper never wakes before its instant.
        let real = Duration::from_micros((real * 1e6).ceil() as u64);
        Box::pin(async move {
            tokio::time::sleep(real).await;
            // Scaled arithmetic can land a hair early; top up.
            let rest = t.since(self.now());
            if !rest.is_zero() {
                tokio::time::sleep(Duration::from_micros(
                    (rest.as_secs_f64() / self.scale * 1e6).ceil() as u64 + 1,
                ))
                .await;
            }
        })
    }
    fn scale(&self) -> f64 {
        self.scale
    }
    fn call_deadline(&self, d: Duration) -> Sleep<'_> {
        let t = self.now().plus(d);
        Box::pin(async move {
            if self.scale > 1.0 {
                tokio::time::sleep(d).await;
            }
            self.sleep_until(t).await;
        })
    }
}

/// A clock that moves only when told to: for tests of 10-minute to 24-hour waits.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    changed: Notify,
}

impl ManualClock {
    /// A manual clock standing at `start`.
    pub fn new(start: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
            changed: Notify::new(),
        })
    }

    /// Move time forward by `d` and wake sleepers that are now due.
    pub fn advance(&self, d: Duration) {
        {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            *now = now.plus(d);
        }
        self.changed.notify_waiters();
    }

    /// Set the time (never backwards).
    pub fn set(&self, t: Timestamp) {
        {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            if t > *now {
                *now = t;
            }
        }
        self.changed.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn sleep_until(&self, t: Timestamp) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let notified = self.changed.notified();
                if self.now() >= t {
                    return;
                }
                notified.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_roundtrips_rfc3339() {
        let t = Timestamp(1_795_000_000_123);
        let s = t.rfc3339();
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(Timestamp::parse_rfc3339(&s).ok(), Some(t));
    }

    #[test]
    fn scaled_clock_maps_virtual_instants_back_to_real_ones() {
        let c = ScaledClock {
            real_anchor: Timestamp(1_000_000),
            virtual_anchor: Timestamp(5_000_000),
            scale: 600.0,
        };
        // 10 virtual minutes after the anchor are 1 real second after it.
        assert_eq!(
            c.real_of(Timestamp(5_000_000 + 600_000)),
            Timestamp(1_001_000)
        );
        assert_eq!(c.real_of(Timestamp(5_000_000)), Timestamp(1_000_000));
    }

    #[test]
    fn scaled_clock_runs_faster() {
        let c = ScaledClock {
            real_anchor: SystemClock.now().plus(Duration::ZERO),
            virtual_anchor: Timestamp(0),
            scale: 600.0,
        };
        let c = ScaledClock {
            real_anchor: Timestamp(c.real_anchor.0 - 1000),
            ..c
        };
        // One real second elapsed since the anchor: ~10 virtual minutes.
        let v = c.now().0;
        assert!((600_000..620_000).contains(&v), "{v}");
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = ManualClock::new(Timestamp(0));
        let c2 = clock.clone();
        let h = tokio::spawn(async move {
            c2.sleep_until(Timestamp(86_400_000)).await;
            c2.now()
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(3600));
        tokio::task::yield_now().await;
        assert!(!h.is_finished());
        clock.advance(Duration::from_secs(23 * 3600));
        let woke = h.await.ok();
        assert_eq!(woke, Some(Timestamp(86_400_000)));
    }
}

/// Real elapsed time for progress displays and benchmarks (never for engine decisions).
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Start now.
    pub fn start() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }
    /// Real time since start.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Block the current thread for `d` of real time. Only for I/O retries outside
/// the engine (e.g. waiting for sled to release a lock this process just
/// dropped); engine timing always goes through a [`Clock`].
pub fn pause_real(d: Duration) {
    std::thread::sleep(d);
}

/// Wait `d` of real time in async code outside the engine: a client polling
/// the daemon, a display refreshing. Engine timing always goes through a [`Clock`].
pub async fn wait_real(d: Duration) {
    tokio::time::sleep(d).await;
}

/// A real-time ticker for displays (progress lines), never for engine decisions.
pub fn real_ticker(every: Duration) -> tokio::time::Interval {
    tokio::time::interval(every)
}
