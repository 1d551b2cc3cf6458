//! Which settings a policy is configured with: its own `[policy.<name>]`
//! table, by the name its `info()` gives; the plain `[policy]` keys for
//! Sluice's own policies (named `sluice-…`: the default and the policies
//! built on its rules) when they have no table of their own; nothing for any
//! other policy. `--setting KEY=VALUE` on a command goes on top of whichever
//! applies.
//!
//! So a config written for the default (`[policy] batch_rows_max = 4096`)
//! never reaches a policy that refuses keys it does not know, and a policy
//! loaded into a drainer gets what its author's table says.

use std::collections::BTreeMap;

/// The policies the plain `[policy]` keys are for: Sluice's own.
pub const OWN_PREFIX: &str = "sluice-";

/// Every policy setting a config and a command line give.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySettings {
    /// The plain `[policy]` keys.
    pub shared: Vec<(String, String)>,
    /// `[policy.<name>]`, by policy name.
    pub tables: BTreeMap<String, Vec<(String, String)>>,
    /// From the command line, on top of the table that applies.
    pub extra: Vec<(String, String)>,
}

impl PolicySettings {
    /// The same, with `extra` on top of what was on top before.
    pub fn with_extra(&self, extra: &[(String, String)]) -> PolicySettings {
        let mut out = self.clone();
        for (key, value) in extra {
            out.extra.retain(|(k, _)| k != key);
            out.extra.push((key.clone(), value.clone()));
        }
        out
    }

    /// What the policy named `name` is configured with.
    pub fn for_policy(&self, name: &str) -> Vec<(String, String)> {
        let mut settings = match self.tables.get(name) {
            Some(table) => table.clone(),
            None if name.starts_with(OWN_PREFIX) => self.shared.clone(),
            None => Vec::new(),
        };
        for (key, value) in &self.extra {
            settings.retain(|(k, _)| k != key);
            settings.push((key.clone(), value.clone()));
        }
        settings
    }

    /// Where `name`'s settings come from, for messages.
    pub fn source_for(&self, name: &str) -> String {
        if self.tables.contains_key(name) {
            format!("[policy.{name}]")
        } else if name.starts_with(OWN_PREFIX) {
            "[policy]".to_string()
        } else {
            format!("no [policy.{name}] table")
        }
    }
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
    fn a_policy_gets_its_own_table_and_sluices_own_get_the_plain_keys() {
        let mut s = PolicySettings {
            shared: pairs(&[("batch_rows_max", "4096")]),
            ..PolicySettings::default()
        };
        s.tables
            .insert("mine".into(), pairs(&[("max_attempts", "3")]));
        assert_eq!(s.for_policy("mine"), pairs(&[("max_attempts", "3")]));
        assert_eq!(s.for_policy("theirs"), pairs(&[]));
        assert_eq!(
            s.for_policy("sluice-default"),
            pairs(&[("batch_rows_max", "4096")])
        );
        s.tables
            .insert("sluice-default".into(), pairs(&[("lease_ms", "60000")]));
        assert_eq!(
            s.for_policy("sluice-default"),
            pairs(&[("lease_ms", "60000")])
        );
    }

    #[test]
    fn extra_settings_go_on_top_of_whichever_table_applies() {
        let mut s = PolicySettings::default();
        s.tables
            .insert("mine".into(), pairs(&[("max_attempts", "3"), ("x", "1")]));
        let s = s.with_extra(&pairs(&[("max_attempts", "9")]));
        assert_eq!(
            s.for_policy("mine"),
            pairs(&[("x", "1"), ("max_attempts", "9")])
        );
        assert_eq!(s.for_policy("other"), pairs(&[("max_attempts", "9")]));
    }
}
