//! The contract by name: what a component imports and exports, against what
//! this host provides and requires.
//!
//! Owns the list of interfaces the host provides, the one a policy must
//! export, and the messages that name what is missing or extra with both
//! package versions. The shapes inside matching interfaces are checked next,
//! when the linker pre-instantiates the component (`LoadError::Contract`).

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package this host implements: `package` in `wit/drain.wit`,
/// written once, in the contract crate.
pub use sluice_contract::CONTRACT;
use sluice_contract::{PACKAGE, VERSION};
/// The interfaces of [`CONTRACT`] the host provides to a policy.
const PROVIDED: [&str; 4] = ["types", "store", "links", "env"];
/// The interface of [`CONTRACT`] a policy must export.
const REQUIRED: &str = "policy";
/// Imports of this namespace are linked to the closed WASI (`wasi.rs`): a
/// policy built with a standard library imports WASI (stdout, environment,
/// exit) even when it never calls it.
const TRAPPED_NAMESPACE: &str = "wasi:";

/// Names that do not fit, and the contract versions the component names.
#[derive(Debug)]
pub(super) struct Mismatch {
    /// `sluice:drain@0.1.0`, several joined by " and ", or "no version of sluice:drain".
    pub built_against: String,
    pub problems: Vec<String>,
}

/// Checks the component's import and export names against the contract.
pub(super) fn check(engine: &Engine, component: &Component) -> Result<(), Mismatch> {
    let ty = component.component_type();
    let imports: Vec<&str> = ty.imports(engine).map(|(name, _)| name).collect();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    check_names(&imports, &exports)
}

fn check_names(imports: &[&str], exports: &[&str]) -> Result<(), Mismatch> {
    let mut problems = Vec::new();
    for import in imports {
        let name = Name::parse(import);
        if name.is_ours() && PROVIDED.contains(&name.interface) && name.version == VERSION {
            continue;
        }
        if name.is_ours() && PROVIDED.contains(&name.interface) {
            problems.push(format!(
                "imports {import} which this host does not provide; this host provides {PACKAGE}/{}@{VERSION}",
                name.interface
            ));
        } else if !name.is_ours() && import.starts_with(TRAPPED_NAMESPACE) {
            continue;
        } else {
            problems.push(format!(
                "imports {import} which this host does not provide; a policy may import {PACKAGE}/{{{}}}@{VERSION}, and WASI (which traps when called)",
                PROVIDED.join(", ")
            ));
        }
    }
    let required = format!("{PACKAGE}/{REQUIRED}@{VERSION}");
    if !exports.contains(&required.as_str()) {
        let near: Vec<&str> = exports
            .iter()
            .copied()
            .filter(|e| {
                let name = Name::parse(e);
                name.is_ours() && name.interface == REQUIRED
            })
            .collect();
        let has = match (near.is_empty(), exports.is_empty()) {
            (false, _) => format!("it exports {}", near.join(", ")),
            (true, true) => "it exports nothing".to_string(),
            (true, false) => format!("it exports {}", exports.join(", ")),
        };
        problems.push(format!("does not export {required} ({has})"));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut versions: Vec<String> = imports
        .iter()
        .chain(exports)
        .map(|n| Name::parse(n))
        .filter(Name::is_ours)
        .map(|n| format!("{PACKAGE}@{}", n.version))
        .collect();
    versions.sort();
    versions.dedup();
    let built_against = if versions.is_empty() {
        format!("no version of {PACKAGE}")
    } else {
        versions.join(" and ")
    };
    Err(Mismatch {
        built_against,
        problems,
    })
}

/// `namespace:package/interface@version`, any part possibly empty.
struct Name<'a> {
    package: &'a str,
    interface: &'a str,
    version: &'a str,
}

impl<'a> Name<'a> {
    fn parse(name: &'a str) -> Name<'a> {
        let (path, version) = name.rsplit_once('@').unwrap_or((name, ""));
        let (package, interface) = path.split_once('/').unwrap_or((path, ""));
        Name {
            package,
            interface,
            version,
        }
    }

    fn is_ours(&self) -> bool {
        self.package == PACKAGE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const OURS: [&str; 4] = [
        "sluice:drain/types@0.2.0",
        "sluice:drain/store@0.2.0",
        "sluice:drain/links@0.2.0",
        "sluice:drain/env@0.2.0",
    ];

    #[test]
    fn the_contract_is_the_package_of_wit_drain_wit() {
        let wit = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/drain.wit"));
        assert!(
            wit.contains(&format!("\npackage {CONTRACT};\n")),
            "contract::CONTRACT must be the package line of wit/drain.wit"
        );
        assert_eq!(CONTRACT, format!("{PACKAGE}@{VERSION}"));
        for interface in PROVIDED.iter().chain([&REQUIRED]) {
            assert!(
                wit.contains(&format!("\ninterface {interface} {{")),
                "{interface}"
            );
        }
    }

    #[test]
    fn the_contract_with_wasi_fits() {
        let mut imports = OURS.to_vec();
        imports.push("wasi:cli/stdout@0.2.6");
        assert!(check_names(&imports, &["sluice:drain/policy@0.2.0"]).is_ok());
    }

    #[test]
    fn another_version_names_both_versions_and_every_difference() {
        let old = [
            "sluice:drain/types@0.1.0",
            "sluice:drain/links@0.1.0",
            "wasi:io/error@0.2.0",
        ];
        let m = check_names(&old, &["sluice:drain/policy@0.1.0"]).unwrap_err();
        assert_eq!(m.built_against, "sluice:drain@0.1.0");
        assert_eq!(
            m.problems,
            [
                "imports sluice:drain/types@0.1.0 which this host does not provide; this host provides sluice:drain/types@0.2.0",
                "imports sluice:drain/links@0.1.0 which this host does not provide; this host provides sluice:drain/links@0.2.0",
                "does not export sluice:drain/policy@0.2.0 (it exports sluice:drain/policy@0.1.0)",
            ]
        );
    }

    #[test]
    fn an_extra_import_is_named_with_what_may_be_imported() {
        let mut imports = OURS.to_vec();
        imports.push("acme:metrics/counter@1.0.0");
        imports.push("sluice:drain/clock@0.2.0");
        let m = check_names(&imports, &["sluice:drain/policy@0.2.0"]).unwrap_err();
        assert_eq!(m.built_against, "sluice:drain@0.2.0");
        assert_eq!(m.problems.len(), 2, "{:?}", m.problems);
        assert!(m.problems[0].starts_with("imports acme:metrics/counter@1.0.0 which this host does not provide; a policy may import sluice:drain/{types, store, links, env}@0.2.0"), "{:?}", m.problems);
        assert!(m.problems[1].starts_with("imports sluice:drain/clock@0.2.0 "));
    }

    #[test]
    fn a_missing_export_lists_what_is_exported() {
        let m = check_names(&OURS, &[]).unwrap_err();
        assert_eq!(
            m.problems,
            ["does not export sluice:drain/policy@0.2.0 (it exports nothing)"]
        );
        let m = check_names(&[], &["acme:x/run"]).unwrap_err();
        assert_eq!(m.built_against, "no version of sluice:drain");
        assert_eq!(
            m.problems,
            ["does not export sluice:drain/policy@0.2.0 (it exports acme:x/run)"]
        );
    }
}
