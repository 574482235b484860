//! Injected faults and the tenant's own throttling (`faults:` of the config).

use std::time::Duration;

use crate::backend::sim::rng::Key;
use crate::backend::sim::tenant::*;
use crate::backend::{BackendError, ErrorKind};
use crate::clock::Timestamp;

impl Shared {
    /// Rate limit and injected faults.
    pub(in crate::backend::sim) fn gate(
        &self,
        mem: &mut Mem,
        key: &str,
        now: Timestamp,
    ) -> Result<(), BackendError> {
        let faults = &self.config.faults;
        let count = mem.calls_per_key.entry(key.to_string()).or_insert(0);
        let n = *count;
        *count += 1;
        if let Some(limit) = faults.throttle_limit {
            let rate = f64::from(limit.max(1));
            let (tokens, last) = mem.bucket.unwrap_or((rate, now));
            let elapsed = now.since(last).as_secs_f64();
            let tokens = (tokens + elapsed * rate).min(rate);
            if tokens < 1.0 {
                mem.bucket = Some((tokens, now));
                mem.stats.throttled += 1;
                mem.stats.rate_limited += 1;
                let wait_ms = ((1.0 - tokens) / rate * 1000.0).ceil().max(1.0) as u64;
                return Err(throttled().with_retry_after(Duration::from_millis(wait_ms)));
            }
            mem.bucket = Some((tokens - 1.0, now));
        }
        // The call counter lives in memory and restarts at 0 with the process; the
        // virtual instant keeps a restarted process from replaying the same faults.
        let draw = Key::new(self.config.seed)
            .str("fault")
            .str(key)
            .int(n)
            .int(now.0 as u64);
        if draw.unit() < faults.transient_rate {
            mem.stats.injected_faults += 1;
            return Err(BackendError::new(
                ErrorKind::Transient,
                "Service is unavailable. Please try again",
            ));
        }
        if draw.unit2() < faults.throttle_rate {
            mem.stats.injected_faults += 1;
            mem.stats.throttled += 1;
            let err = throttled();
            let r = draw.int(7);
            return Err(if r.unit() < 0.5 {
                err.with_retry_after(r.between(Duration::from_secs(5), Duration::from_secs(60)))
            } else {
                err
            });
        }
        Ok(())
    }
}

pub(in crate::backend::sim) fn throttled() -> BackendError {
    BackendError::new(ErrorKind::Throttled, "Too Many Requests")
}
