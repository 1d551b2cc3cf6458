//! The policy's tunable constants, set by name through `configure()`.
//!
//! Defaults are the reference drain's constants. Every value is checked, and
//! a bad one is an error that names the key and says what would be accepted.

use std::fmt;

/// Tunable constants of the default policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Attempts after which a transient failure becomes dead `max_attempts`.
    pub max_attempts: u32,
    /// Backoff before attempt n+1 is `base · 2^min(n, exponent_max)`, capped.
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    pub backoff_exponent_max: u32,
    /// How long a claim holds a row; a drainer that dies frees its rows after it.
    pub lease_ms: i64,
    /// Rows the first tick claims, and the fewest any tick claims: the claim
    /// grows from here while the backlog is large and ticks are quick
    /// (`claim::ClaimSize`). Set alone, it fixes the claim at this size.
    pub batch_rows: u32,
    /// The most rows one tick claims. 1024 by default: on the benchmark,
    /// larger claims drained no faster and cost the process 15 MB more at
    /// 4096 (every row is held in the host, in the guest and as a frame).
    pub batch_rows_max: u32,
    /// A tick (claim to last ack) longer than this stops the claim from
    /// growing; one over twice this shrinks it. Bounds how long a row enqueued
    /// during a tick waits for the next.
    pub batch_target_ms: i64,
    /// How long a send waits for its ack before it counts as failed.
    pub ack_timeout_ms: u32,
    /// Undelivered rows older than this become dead `expired`.
    pub row_ttl_ms: i64,
    /// A session row whose session is not registered at all becomes dead
    /// `session_gone` once older than this.
    pub session_gone_after_ms: i64,
    /// The not-ready log of a session row fires on attempt 1 and every n-th.
    pub session_not_ready_log_every: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_attempts: 25,
            backoff_base_ms: 500,
            backoff_cap_ms: 30_000,
            backoff_exponent_max: 12,
            lease_ms: 30_000,
            batch_rows: 32,
            batch_rows_max: 1024,
            batch_target_ms: 100,
            ack_timeout_ms: 15_000,
            row_ttl_ms: 24 * 60 * 60 * 1000,
            session_gone_after_ms: 10 * 60 * 1000,
            session_not_ready_log_every: 60,
        }
    }
}

/// Upper bounds that keep a typo from turning into a pathological setting.
const BATCH_ROWS_MAX: u32 = 10_000;
const MAX_ATTEMPTS_MAX: u32 = 10_000;
const EXPONENT_MAX: u32 = 40;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A setting that could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError(pub String);

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The names `configure()` accepts, for error messages and docs.
pub const SETTING_NAMES: &[&str] = &[
    "max_attempts",
    "backoff_base_ms",
    "backoff_cap_ms",
    "backoff_exponent_max",
    "lease_ms",
    "batch_rows",
    "batch_rows_max",
    "batch_target_ms",
    "ack_timeout_ms",
    "row_ttl_ms",
    "session_gone_after_ms",
    "session_not_ready_log_every",
];

impl Settings {
    /// Applies `pairs` on top of the defaults. All or nothing.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Settings, SettingError> {
        let mut settings = Settings::default();
        for (key, value) in pairs {
            settings.set(key, value)?;
        }
        // `batch_rows` alone fixes the claim; with `batch_rows_max` it is the
        // floor the claim adapts from.
        let given = |name: &str| pairs.iter().any(|(key, _)| key == name);
        if given("batch_rows") && !given("batch_rows_max") {
            settings.batch_rows_max = settings.batch_rows;
        }
        settings.check()?;
        Ok(settings)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        match key {
            "max_attempts" => self.max_attempts = int(key, value, 1, MAX_ATTEMPTS_MAX)?,
            "backoff_base_ms" => self.backoff_base_ms = int(key, value, 1, DAY_MS)?,
            "backoff_cap_ms" => self.backoff_cap_ms = int(key, value, 1, DAY_MS)?,
            "backoff_exponent_max" => self.backoff_exponent_max = int(key, value, 0, EXPONENT_MAX)?,
            "lease_ms" => self.lease_ms = int(key, value, 1, DAY_MS)?,
            "batch_rows" => self.batch_rows = int(key, value, 1, BATCH_ROWS_MAX)?,
            "batch_rows_max" => self.batch_rows_max = int(key, value, 1, BATCH_ROWS_MAX)?,
            "batch_target_ms" => self.batch_target_ms = int(key, value, 1, 60_000)?,
            "ack_timeout_ms" => self.ack_timeout_ms = int(key, value, 1, 3_600_000)?,
            "row_ttl_ms" => self.row_ttl_ms = int(key, value, 1, 365 * DAY_MS)?,
            "session_gone_after_ms" => {
                self.session_gone_after_ms = int(key, value, 1, 365 * DAY_MS)?
            }
            "session_not_ready_log_every" => {
                self.session_not_ready_log_every = int(key, value, 1, u32::MAX)?
            }
            _ => {
                return Err(SettingError(format!(
                    "unknown policy setting `{key}`: known settings are {}",
                    SETTING_NAMES.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Checks that hold between settings.
    fn check(&self) -> Result<(), SettingError> {
        if self.batch_rows > self.batch_rows_max {
            return Err(SettingError(format!(
                "policy setting `batch_rows` ({}) exceeds `batch_rows_max` ({}): the claim adapts between them; raise the max or lower batch_rows",
                self.batch_rows, self.batch_rows_max
            )));
        }
        if self.backoff_base_ms > self.backoff_cap_ms {
            return Err(SettingError(format!(
                "policy setting `backoff_base_ms` ({}) exceeds `backoff_cap_ms` ({}): raise the cap or lower the base",
                self.backoff_base_ms, self.backoff_cap_ms
            )));
        }
        if self.lease_ms <= i64::from(self.ack_timeout_ms) {
            return Err(SettingError(format!(
                "policy setting `lease_ms` ({}) must exceed `ack_timeout_ms` ({}): a lease that runs out while a send awaits its ack lets another drainer send the row again",
                self.lease_ms, self.ack_timeout_ms
            )));
        }
        Ok(())
    }

    /// The wait before the next attempt of a row that has made `attempts`:
    /// `min(cap, base · 2^min(attempts, exponent_max))`.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let exponent = attempts.min(self.backoff_exponent_max);
        let factor = 1i64.checked_shl(exponent).unwrap_or(i64::MAX);
        self.backoff_base_ms
            .saturating_mul(factor)
            .min(self.backoff_cap_ms)
    }
}

fn int<T>(key: &str, value: &str, min: T, max: T) -> Result<T, SettingError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let parsed: T = value.trim().parse().map_err(|_| {
        SettingError(format!(
            "policy setting `{key}` = {value:?} is not a whole number: give one from {min} to {max}"
        ))
    })?;
    if parsed < min || parsed > max {
        return Err(SettingError(format!(
            "policy setting `{key}` = {value} is out of range: give one from {min} to {max}"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_reference_constants() {
        let s = Settings::default();
        assert_eq!(
            (s.max_attempts, s.backoff_base_ms, s.backoff_cap_ms),
            (25, 500, 30_000)
        );
        assert_eq!(
            (s.batch_rows, s.lease_ms, s.ack_timeout_ms),
            (32, 30_000, 15_000)
        );
        assert_eq!((s.batch_rows_max, s.batch_target_ms), (1024, 100));
        assert_eq!(Settings::from_pairs(&[]), Ok(s));
    }

    #[test]
    fn batch_rows_alone_fixes_the_claim_and_with_a_max_is_its_floor() {
        let fixed = Settings::from_pairs(&pairs(&[("batch_rows", "100")])).unwrap();
        assert_eq!((fixed.batch_rows, fixed.batch_rows_max), (100, 100));
        let adaptive =
            Settings::from_pairs(&pairs(&[("batch_rows_max", "900"), ("batch_rows", "100")]))
                .unwrap();
        assert_eq!((adaptive.batch_rows, adaptive.batch_rows_max), (100, 900));
        let err = Settings::from_pairs(&pairs(&[("batch_rows", "100"), ("batch_rows_max", "50")]))
            .unwrap_err();
        assert!(
            err.0
                .contains("`batch_rows` (100) exceeds `batch_rows_max` (50)"),
            "{err}"
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_thirty() {
        let s = Settings::default();
        let expected = [
            1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000, 30_000,
            30_000, 30_000,
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(s.backoff_ms(i as u32 + 1), *want, "attempts {}", i + 1);
        }
    }

    #[test]
    fn backoff_exponent_stops_at_its_max() {
        let s = Settings::from_pairs(&pairs(&[
            ("backoff_base_ms", "1"),
            ("backoff_cap_ms", "86400000"),
        ]))
        .unwrap();
        assert_eq!(s.backoff_ms(12), 4096);
        assert_eq!(s.backoff_ms(13), 4096);
        assert_eq!(s.backoff_ms(u32::MAX), 4096);
    }

    #[test]
    fn settings_apply_by_name() {
        let s = Settings::from_pairs(&pairs(&[("batch_rows", "1024"), ("max_attempts", " 3 ")]))
            .unwrap();
        assert_eq!((s.batch_rows, s.max_attempts), (1024, 3));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (("batch_size", "10"), "unknown policy setting `batch_size`"),
            (
                ("batch_rows", "many"),
                "`batch_rows` = \"many\" is not a whole number",
            ),
            (("batch_rows", "0"), "`batch_rows` = 0 is out of range"),
            (
                ("max_attempts", "-1"),
                "`max_attempts` = \"-1\" is not a whole number",
            ),
            (
                ("backoff_base_ms", "60000"),
                "`backoff_base_ms` (60000) exceeds `backoff_cap_ms`",
            ),
            (
                ("lease_ms", "1000"),
                "`lease_ms` (1000) must exceed `ack_timeout_ms` (15000)",
            ),
        ];
        for ((key, value), want) in cases {
            let err = Settings::from_pairs(&pairs(&[(key, value)])).unwrap_err();
            assert!(err.0.contains(want), "{key}={value}: {err}");
        }
    }
}
