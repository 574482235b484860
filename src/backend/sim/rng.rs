//! Keyed, stateless random draws.
//!
//! The engine calls the simulator from many tasks at once, so draws cannot come
//! from one shared stream (the order of calls would change the outcome). Each
//! draw is instead a hash of the seed and what it is for (user, operation,
//! sequence number), mixed with splitmix64.

use std::time::Duration;

/// One splitmix64 step: a strong 64-bit mixer.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A draw key: the seed plus any number of parts, hashed in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key(u64);

impl Key {
    /// Start from the seed.
    pub(crate) fn new(seed: u64) -> Key {
        Key(splitmix64(seed ^ 0x5EED_0F7E_4A47))
    }

    /// Mix in a string (FNV-1a over its bytes, then splitmix).
    pub(crate) fn str(self, s: &str) -> Key {
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in s.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01B3);
        }
        Key(splitmix64(self.0 ^ splitmix64(h)))
    }

    /// Mix in an integer.
    pub(crate) fn int(self, n: u64) -> Key {
        Key(splitmix64(self.0 ^ splitmix64(n ^ 0xA5A5_A5A5)))
    }

    /// The raw 64-bit value.
    pub(crate) fn bits(self) -> u64 {
        splitmix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A second independent value in `[0, 1)` from the same key.
    pub(crate) fn unit2(self) -> f64 {
        self.int(0xD1CE).unit()
    }

    /// Uniform duration in `[lo, hi]` (millisecond resolution).
    pub(crate) fn between(self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = lo.as_millis() as u64;
        let hi_ms = (hi.as_millis() as u64).max(lo_ms);
        Duration::from_millis(lo_ms + (self.bits() % (hi_ms - lo_ms + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_and_distinct() {
        let a = Key::new(42).str("user0001").int(3).unit();
        let b = Key::new(42).str("user0001").int(3).unit();
        let c = Key::new(42).str("user0001").int(4).unit();
        let d = Key::new(43).str("user0001").int(3).unit();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn unit_draws_look_uniform() {
        let n = 10_000;
        let below: usize = (0..n)
            .filter(|i| Key::new(1).int(*i as u64).unit() < 0.3)
            .count();
        assert!((2_700..3_300).contains(&below), "{below}");
    }

    #[test]
    fn between_stays_in_range() {
        for i in 0..1000 {
            let d = Key::new(9)
                .int(i)
                .between(Duration::from_secs(5), Duration::from_secs(60));
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(60));
        }
    }
}
