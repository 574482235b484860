//! Call pacing: at most `rate` backend calls per (clock) second across a run,
//! because the service throttles per tenant and a 429 costs more than waiting.

use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{SharedClock, Timestamp};

/// Evenly spaced call slots on the run's clock.
pub struct RateLimiter {
    clock: SharedClock,
    /// (next free slot, spacing between slots).
    slots: Mutex<(Timestamp, Duration)>,
}

impl RateLimiter {
    /// At most `per_second` calls per second (must be > 0).
    pub fn new(clock: SharedClock, per_second: f64) -> RateLimiter {
        let now = clock.now();
        RateLimiter {
            clock,
            slots: Mutex::new((now, interval(per_second))),
        }
    }

    /// Calls per second now.
    pub fn rate(&self) -> f64 {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        1.0 / slots.1.as_secs_f64()
    }

    /// Lower the rate to `per_second` if that is below the current one (a
    /// tenant shared by runs keeps to the strictest limit any of them set).
    pub fn tighten(&self, per_second: f64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.1 = slots.1.max(interval(per_second));
    }

    /// Wait for the next free slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.clock.now();
            let slot = if slots.0 > now { slots.0 } else { now };
            slots.0 = slot.plus(slots.1);
            slot
        };
        if slot > self.clock.now() {
            crate::metrics::global().rate_limiter_wait();
            self.clock.sleep_until(slot).await;
        }
    }
}

fn interval(per_second: f64) -> Duration {
    Duration::from_secs_f64(1.0 / per_second.max(1e-6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn slots_are_spaced_by_the_rate() {
        let clock = ManualClock::new(Timestamp(0));
        let lim = Arc::new(RateLimiter::new(clock.clone(), 2.0));
        lim.acquire().await; // t=0
        let l2 = lim.clone();
        let h = tokio::spawn(async move { l2.acquire().await });
        tokio::task::yield_now().await;
        assert!(!h.is_finished(), "second call must wait 500 ms");
        clock.advance(Duration::from_millis(500));
        assert!(h.await.is_ok());
    }
}
