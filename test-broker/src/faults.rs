//! The test broker's seeded randomness: one small generator per connection.
//!
//! Owns: `Faults` (splitmix64 seeded from `BrokerOptions::seed` and the
//! connection number) and its draws. Does not own: what a draw decides
//! (`ledger` drops acks, `answer` refuses hellos).
//!
//! One generator per connection, not one for the broker: connections run
//! concurrently, so a shared generator's draws would depend on scheduling;
//! per connection, the same seed and the same frames give the same faults.

/// Mixes the connection number into the seed so neighbouring connections
/// get unrelated streams (splitmix64's own increment, an odd constant).
const CONNECTION_STRIDE: u64 = 0x9E37_79B9_7F4A_7C15;

pub(crate) struct Faults {
    state: u64,
}

impl Faults {
    pub(crate) fn new(seed: u64, connection: u64) -> Faults {
        let mut faults = Faults {
            state: seed ^ connection.wrapping_mul(CONNECTION_STRIDE).rotate_left(32),
        };
        // One draw so seed 0 and connection 0 do not start on a zero state.
        faults.next_u64();
        faults
    }

    /// splitmix64: tiny, fast, and good enough to pick faults.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(CONNECTION_STRIDE);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `share` (clamped to 0–1). Draws nothing when
    /// `share` is 0 or 1, so an unused fault never shifts the others.
    pub(crate) fn chance(&mut self, share: f64) -> bool {
        if share.is_nan() || share <= 0.0 {
            return false;
        }
        if share >= 1.0 {
            return true;
        }
        // The top 53 bits as a uniform number in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64, connection: u64, share: f64) -> Vec<bool> {
        let mut faults = Faults::new(seed, connection);
        (0..64).map(|_| faults.chance(share)).collect()
    }

    #[test]
    fn the_same_seed_and_connection_repeat_the_same_faults() {
        assert_eq!(draws(7, 3, 0.5), draws(7, 3, 0.5));
        assert_ne!(draws(7, 3, 0.5), draws(8, 3, 0.5));
        assert_ne!(draws(7, 3, 0.5), draws(7, 4, 0.5));
    }

    #[test]
    fn shares_are_roughly_kept_and_the_ends_are_exact() {
        let mut faults = Faults::new(0, 1);
        let hits = (0..10_000).filter(|_| faults.chance(0.1)).count();
        assert!((800..1_200).contains(&hits), "{hits} of 10000 at 0.1");
        assert!(draws(1, 1, 0.0).iter().all(|hit| !hit));
        assert!(draws(1, 1, 1.0).iter().all(|hit| *hit));
        assert!(draws(1, 1, f64::NAN).iter().all(|hit| !hit));
    }
}
