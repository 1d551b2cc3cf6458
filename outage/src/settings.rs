//! The outage-aware policy's settings: every setting of the default policy,
//! plus `outage_recheck_ms`, set by name through `configure()`.
//!
//! Owns: the one new setting and the split of the pairs between it and the
//! default's [`Settings`], which check their own values as they always do.

use sluice_policy::settings::SETTING_NAMES;
use sluice_policy::{SettingError, Settings};

/// The key of the recheck period.
pub const OUTAGE_RECHECK_KEY: &str = "outage_recheck_ms";
/// How often rows held for a link that is down are claimed again, by default.
pub const OUTAGE_RECHECK_MS_DEFAULT: i64 = 2_000;
/// The longest recheck period: an hour (the row TTL bounds the wait anyway).
pub const OUTAGE_RECHECK_MS_MAX: i64 = 60 * 60 * 1000;

/// The default policy's settings and the recheck period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutageSettings {
    /// Everything the default policy reads, with its defaults and checks.
    pub policy: Settings,
    /// Rows held for a link that is down are due again at the next multiple
    /// of this period: one shared time for all of them.
    pub outage_recheck_ms: i64,
}

impl Default for OutageSettings {
    fn default() -> Self {
        OutageSettings {
            policy: Settings::default(),
            outage_recheck_ms: OUTAGE_RECHECK_MS_DEFAULT,
        }
    }
}

impl OutageSettings {
    /// Applies `pairs` on top of the defaults. All or nothing.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<OutageSettings, SettingError> {
        let mut outage_recheck_ms = OUTAGE_RECHECK_MS_DEFAULT;
        let mut rest = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            if key == OUTAGE_RECHECK_KEY {
                outage_recheck_ms = recheck_ms(value)?;
            } else if SETTING_NAMES.contains(&key.as_str()) {
                rest.push((key.clone(), value.clone()));
            } else {
                return Err(SettingError(format!(
                    "unknown policy setting `{key}`: known settings are {}, {OUTAGE_RECHECK_KEY}",
                    SETTING_NAMES.join(", ")
                )));
            }
        }
        Ok(OutageSettings {
            policy: Settings::from_pairs(&rest)?,
            outage_recheck_ms,
        })
    }
}

fn recheck_ms(value: &str) -> Result<i64, SettingError> {
    let range = format!("give one from 1 to {OUTAGE_RECHECK_MS_MAX}");
    let parsed: i64 = value.trim().parse().map_err(|_| {
        SettingError(format!(
            "policy setting `{OUTAGE_RECHECK_KEY}` = {value:?} is not a whole number: {range}"
        ))
    })?;
    if !(1..=OUTAGE_RECHECK_MS_MAX).contains(&parsed) {
        return Err(SettingError(format!(
            "policy setting `{OUTAGE_RECHECK_KEY}` = {value} is out of range: {range}"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_default_policys_plus_two_seconds() {
        let s = OutageSettings::from_pairs(&[]).unwrap();
        assert_eq!(s, OutageSettings::default());
        assert_eq!(s.policy, Settings::default());
        assert_eq!(s.outage_recheck_ms, 2_000);
    }

    #[test]
    fn both_kinds_of_setting_apply_by_name() {
        let s = OutageSettings::from_pairs(&pairs(&[
            ("batch_rows", "1024"),
            ("outage_recheck_ms", " 500 "),
        ]))
        .unwrap();
        assert_eq!((s.policy.batch_rows, s.outage_recheck_ms), (1024, 500));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (
                ("outage_recheck_ms", "0"),
                "`outage_recheck_ms` = 0 is out of range",
            ),
            (
                ("outage_recheck_ms", "soon"),
                "`outage_recheck_ms` = \"soon\" is not a whole number",
            ),
            (("recheck", "10"), "unknown policy setting `recheck`"),
            (("batch_rows", "0"), "`batch_rows` = 0 is out of range"),
        ];
        for ((key, value), want) in cases {
            let err = OutageSettings::from_pairs(&pairs(&[(key, value)])).unwrap_err();
            assert!(err.0.contains(want), "{key}={value}: {err}");
        }
        let err = OutageSettings::from_pairs(&pairs(&[("recheck", "1")])).unwrap_err();
        assert!(
            err.0.contains("max_attempts") && err.0.contains("outage_recheck_ms"),
            "{err}"
        );
    }
}
