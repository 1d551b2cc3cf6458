//! Loading a policy: the compile cache (a second load reads the file, a bad
//! file is rebuilt, an unusable directory only costs the compile), the
//! contract by name (an old contract, a missing export, an extra import are
//! refused with what is wrong and both versions), and `sluice policy check`.
//!
//! Test components are made from WIT with `wit-component`'s dummy modules:
//! real components whose functions trap, which is enough, because a
//! mismatch is found before anything is called. Every test uses its own
//! cache directory (an explicit `PolicyCache::Dir`, not the environment).

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use sluice::engine::{
    CONTRACT, CacheStatus, DEFAULT_POLICY_WASM, LoadError, PolicyCache, PolicyEngine,
};
use sluice::policy_settings::PolicySettings;
use sluice_cli::policy_check::{CheckArgs, check};
use sluice_lab::validate::{BRIEF_SIM_ROWS, BRIEF_SIM_SEEDS, simulate_briefly, validate};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const FAULTY: &str = sluice::bundled::FAULTY_POLICY_FILE;
const WIT: &str = include_str!("../wit/drain.wit");
const WIT_0_1_0: &str = include_str!("fixtures/drain-0.1.0.wit");

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

fn load_in(dir: &Path) -> PolicyEngine {
    PolicyEngine::load_with_cache(
        "embedded default",
        DEFAULT_POLICY_WASM,
        vec![],
        &PolicyCache::Dir(dir.into()),
    )
    .unwrap()
}

/// The cache file a load stored, after asserting it compiled and stored it.
fn stored(engine: &PolicyEngine) -> PathBuf {
    match engine.cache_status() {
        CacheStatus::Miss {
            path, stored: true, ..
        } => path.clone(),
        other => panic!("expected a compile that was stored, got {other:?}"),
    }
}

fn miss_reason(engine: &PolicyEngine) -> String {
    match engine.cache_status() {
        CacheStatus::Miss { why, .. } => why.clone(),
        other => panic!("expected a miss, got {other:?}"),
    }
}

#[test]
fn a_second_load_reads_the_cache_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cold = load_in(tmp.path());
    assert_eq!(miss_reason(&cold), "not cached yet");
    let path = stored(&cold);
    assert!(path.starts_with(tmp.path()) && path.is_file());
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&cold.meta().sha256) && name.ends_with(".cwasm"),
        "{name}"
    );

    let warm = load_in(tmp.path());
    assert_eq!(warm.cache_status(), &CacheStatus::Hit(path));
    assert_eq!(warm.meta(), cold.meta());
    assert_eq!(warm.meta().name, sluice::policy::POLICY_NAME);
    // Nothing but the entry is left behind (no temporary files).
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn a_tampered_or_truncated_cache_file_is_a_miss_and_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let path = stored(&load_in(tmp.path()));
    let good = std::fs::read(&path).unwrap();

    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x55;
    std::fs::write(&path, &tampered).unwrap();
    let again = load_in(tmp.path());
    assert!(
        miss_reason(&again).contains("checksum mismatch"),
        "{:?}",
        again.cache_status()
    );
    assert_eq!(stored(&again), path);
    assert_eq!(
        load_in(tmp.path()).cache_status(),
        &CacheStatus::Hit(path.clone())
    );

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(miss_reason(&load_in(tmp.path())).contains("checksum mismatch"));
    assert_eq!(load_in(tmp.path()).cache_status(), &CacheStatus::Hit(path));
}

#[test]
fn a_cache_file_of_another_wasmtime_or_format_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let path = stored(&load_in(tmp.path()));
    let good = std::fs::read(&path).unwrap();
    let ours = format!("wasmtime={}", sluice::engine::WASMTIME_VERSION);
    for (from, to, reason) in [
        (ours.as_str(), "wasmtime=47.0.1", "built by wasmtime 47.0.1"),
        (
            "sluice-compiled-policy 1 ",
            "sluice-compiled-policy 9 ",
            "cache format 9",
        ),
    ] {
        let header_end = good.iter().position(|b| *b == b'\n').unwrap();
        let header = std::str::from_utf8(&good[..header_end]).unwrap();
        assert!(header.contains(from), "{header}");
        let mut other = header.replace(from, to).into_bytes();
        other.extend_from_slice(&good[header_end..]);
        std::fs::write(&path, &other).unwrap();

        let rebuilt = load_in(tmp.path());
        assert!(
            miss_reason(&rebuilt).contains(reason),
            "{:?}",
            rebuilt.cache_status()
        );
        stored(&rebuilt);
        assert_eq!(
            std::fs::read(&path).unwrap()[..header_end],
            good[..header_end]
        );
    }
}

#[test]
fn a_cache_that_cannot_be_used_only_costs_the_compile() {
    let tmp = tempfile::tempdir().unwrap();
    let reference =
        PolicyEngine::load_uncached("embedded default", DEFAULT_POLICY_WASM, vec![]).unwrap();
    assert_eq!(
        reference.cache_status(),
        &CacheStatus::Off("turned off".into())
    );

    // Read-only: loads (as root the write still succeeds, so only the load is asserted).
    let read_only = tmp.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o500)).unwrap();
    assert_eq!(load_in(&read_only).meta(), reference.meta());

    // Cannot even be created: a file stands where a parent directory should.
    let blocked = tmp.path().join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let engine = load_in(&blocked.join("cache"));
    assert!(
        matches!(engine.cache_status(), CacheStatus::Off(why) if why.contains("cannot create cache directory")),
        "{:?}",
        engine.cache_status()
    );
    assert_eq!(engine.meta(), reference.meta());

    // Writable by others: not trusted, not used.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let engine = load_in(&open);
    assert!(
        matches!(engine.cache_status(), CacheStatus::Off(why) if why.contains("other users")),
        "{:?}",
        engine.cache_status()
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
}

/// A component of `world` in `wit` whose functions all trap.
fn component(wit: &str, world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("drain.wit", wit).unwrap();
    let world = resolve.select_world(&[package], Some(world)).unwrap();
    let mut module = wit_component::dummy_module(
        &resolve,
        world,
        wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
    );
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

fn refusal(bytes: &[u8]) -> LoadError {
    match PolicyEngine::load_uncached("candidate.wasm", bytes, vec![]) {
        Ok(engine) => panic!("{:?} was accepted", engine.meta()),
        Err(e) => e,
    }
}

#[test]
fn a_dummy_of_the_current_contract_passes_the_name_check() {
    // It gets as far as calling info(), which traps in a dummy: the names fit.
    let e = refusal(&component(WIT, "drain-policy"));
    assert!(matches!(e, LoadError::Start { .. }), "{e}");
}

#[test]
fn a_policy_of_the_old_contract_is_refused_naming_both_versions() {
    let e = refusal(&component(WIT_0_1_0, "drain-policy"));
    let text = e.to_string();
    assert!(matches!(e, LoadError::Interfaces { .. }), "{text}");
    for expected in [
        "policy candidate.wasm does not fit this host",
        "built against sluice:drain@0.1.0, this host implements sluice:drain@0.2.0",
        "imports sluice:drain/links@0.1.0 which this host does not provide; this host provides sluice:drain/links@0.2.0",
        "imports sluice:drain/store@0.1.0 which",
        "does not export sluice:drain/policy@0.2.0 (it exports sluice:drain/policy@0.1.0)",
        "Build it against this host's wit/drain.wit",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in: {text}");
    }
}

#[test]
fn a_missing_export_or_an_extra_import_is_named() {
    let no_export =
        format!("{WIT}\nworld no-export {{ import store; import links; import env; }}\n");
    let text = refusal(&component(&no_export, "no-export")).to_string();
    assert!(
        text.contains("does not export sluice:drain/policy@0.2.0 (it exports nothing)"),
        "{text}"
    );
    assert!(text.contains("built against sluice:drain@0.2.0"), "{text}");

    let extra = format!(
        "{WIT}\ninterface clock {{ wall: func() -> s64; }}\n\
         world extra {{ import store; import links; import env; import clock; export policy; }}\n"
    );
    let text = refusal(&component(&extra, "extra")).to_string();
    assert!(
        text.contains("imports sluice:drain/clock@0.2.0 which this host does not provide; a policy may import sluice:drain/{types, store, links, env}@0.2.0"),
        "{text}"
    );
    assert!(!text.contains("does not export"), "{text}");
}

#[test]
fn the_right_names_with_the_wrong_shape_are_a_contract_error() {
    let changed = WIT.replace(
        "tick: func(now: timestamp-ms) -> result<tick-report, string>;",
        "tick: func(now: timestamp-ms) -> u32;",
    );
    assert_ne!(changed, WIT);
    let e = refusal(&component(&changed, "drain-policy"));
    assert!(matches!(e, LoadError::Contract { .. }), "{e}");
    assert!(e.to_string().contains(CONTRACT), "{e}");
}

#[test]
fn what_is_not_a_component_is_refused_as_before() {
    let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
    assert!(matches!(refusal(&core), LoadError::CoreModule { .. }));
    assert!(matches!(
        refusal(b"not wasm at all"),
        LoadError::NotComponent { .. }
    ));
}

/// Copies of the golden traces whose recorded settings also switch on a
/// planted bug of the faulty policy.
fn golden_with_fault(dir: &Path, fault: &str) {
    for entry in std::fs::read_dir(golden()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (header, rest) = text.split_once('\n').unwrap();
        let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
        header["settings"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(["fault", fault]));
        std::fs::write(
            dir.join(path.file_name().unwrap()),
            format!("{header}\n{rest}"),
        )
        .unwrap();
    }
}

#[test]
fn validate_replays_a_folder_of_traces() {
    let faulty = std::fs::read(FAULTY).unwrap();
    let path = Path::new(FAULTY);
    // The faulty build with no fault on replays every golden trace.
    let engine = validate(path, &faulty, &PolicySettings::default(), Some(&golden())).unwrap();
    assert_eq!(engine.meta().source, path.display().to_string());

    let tmp = tempfile::tempdir().unwrap();
    golden_with_fault(tmp.path(), "never_dead");
    let error = validate(path, &faulty, &PolicySettings::default(), Some(tmp.path()))
        .err()
        .unwrap();
    assert!(
        error.contains("does not replay") && error.contains("diverged at tick"),
        "{error}"
    );

    let empty = tempfile::tempdir().unwrap();
    let error = validate(
        path,
        &faulty,
        &PolicySettings::default(),
        Some(empty.path()),
    )
    .err()
    .unwrap();
    assert!(error.contains("no *.trace files"), "{error}");

    let old = component(WIT_0_1_0, "drain-policy");
    let error = validate(
        Path::new("old.wasm"),
        &old,
        &PolicySettings::default(),
        Some(&golden()),
    )
    .err()
    .unwrap();
    assert!(error.contains("sluice:drain@0.1.0"), "{error}");
}

fn check_file(file: &Path, verify: Option<&Path>, settings: &[&str]) -> ExitCode {
    check(&CheckArgs {
        file: file.into(),
        verify: verify.map(Into::into),
        config: None,
        settings: settings.iter().map(|s| s.to_string()).collect(),
    })
    .unwrap()
}

#[test]
fn policy_check_exits_0_when_all_pass_and_1_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let default = tmp.path().join("default.wasm");
    std::fs::write(&default, DEFAULT_POLICY_WASM).unwrap();
    assert_eq!(check_file(&default, None, &[]), ExitCode::SUCCESS);
    assert_eq!(
        check_file(&default, Some(&golden()), &[]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        check_file(&default, None, &["no_such_setting=1"]),
        ExitCode::from(1)
    );

    let traces = tmp.path().join("traces");
    std::fs::create_dir(&traces).unwrap();
    golden_with_fault(&traces, "forget_settle");
    assert_eq!(
        check_file(Path::new(FAULTY), Some(&traces), &[]),
        ExitCode::from(1)
    );

    let old = tmp.path().join("old.wasm");
    std::fs::write(&old, component(WIT_0_1_0, "drain-policy")).unwrap();
    assert_eq!(check_file(&old, None, &[]), ExitCode::from(1));

    // A file that is not there is not a verdict on a policy: an error (exit 2).
    assert!(
        check(&CheckArgs {
            file: tmp.path().join("missing.wasm"),
            verify: None,
            config: None,
            settings: vec![],
        })
        .is_err()
    );
}

/// `policy check`'s short simulation runs the candidate under the host's
/// guard: each lie of the faulty policy is refused, naming the rule it
/// broke, while the default and the faulty build with no fault pass.
#[test]
fn policy_check_refuses_each_lie_naming_its_rule() {
    let faulty = std::fs::read(FAULTY).unwrap();
    let load = |fault: &str| {
        let settings = vec![("fault".to_string(), fault.to_string())];
        PolicyEngine::load("faulty", &faulty, settings).unwrap()
    };
    let lies = [
        (
            "session_over_daemon",
            &["session_row_never_over_daemon"][..],
        ),
        ("done_without_send", &["done_only_after_accept"]),
        ("broadcast_direct", &["content_matches_row"]),
        ("tamper_ciphertext", &["content_matches_row"]),
        (
            "foreign_rowid",
            &["only_claimed_rows_dispatched", "settle_only_own_claims"],
        ),
        ("double_send", &["one_dispatch_per_row"]),
    ];
    for (fault, rules) in lies {
        let refused = simulate_briefly(&load(fault)).unwrap_err();
        assert!(
            rules
                .iter()
                .any(|rule| refused.contains(&format!("`{rule}`"))),
            "{fault}: {refused}"
        );
        let setting = format!("fault={fault}");
        assert_eq!(
            check_file(Path::new(FAULTY), None, &[&setting]),
            ExitCode::from(1),
            "{fault}"
        );
    }
    let brief = simulate_briefly(&load("none")).unwrap();
    assert_eq!(
        brief.done + brief.dead + brief.aborted,
        (BRIEF_SIM_SEEDS * u64::from(BRIEF_SIM_ROWS)) as usize,
        "every row of every seed finished"
    );
    let default = PolicyEngine::load_default(vec![]).unwrap();
    assert!(simulate_briefly(&default).is_ok());
}

/// `sluice policy test` judges behaviour, not identity. The outage-aware
/// policy decides differently from the default on the golden traces of a
/// link that is down (which `--verify` refuses), and passes: every rule and
/// invariant held in every profile. A policy that never dead-letters fails,
/// naming the invariant and the command that shows it again.
#[test]
fn policy_test_passes_a_different_policy_and_fails_a_broken_one() {
    use crate::common::{sluice, stderr, stdout};
    let outage = sluice::bundled::OUTAGE_POLICY_FILE;
    let out = sluice(&["policy", "test", outage, "--seeds", "1", "--rows", "150"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for profile in sluice_lab::behaviour::PROFILES {
        assert!(text.contains(profile), "{profile} missing: {text}");
    }
    assert!(text.contains("test     ok"), "{text}");
    let differing: usize = text
        .split("what-if: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count of differing decisions");
    assert!(
        differing > 0,
        "the outage-aware policy decides some rows differently: {text}"
    );

    let out = sluice(&[
        "policy",
        "test",
        FAULTY,
        "--setting",
        "fault=never_dead",
        "--seeds",
        "1",
        "--rows",
        "150",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("BROKEN") && text.contains("attempts_bounded") && text.contains("sluice sim"),
        "{text}"
    );
    assert!(text.contains("test     failed"), "{text}");
}

/// A policy that passes every load check but cannot finish a tick (here it
/// traps on every one, as a build that calls `println!` does: a policy has
/// no stdout) is refused by `policy check`, with the trap's one-line reason,
/// instead of going live and being rolled back.
#[test]
fn policy_check_refuses_a_policy_whose_ticks_trap() {
    use crate::common::{sluice, stdout};
    let out = sluice(&["policy", "check", FAULTY, "--setting", "fault=trap"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("refused") && text.contains("tick 1 failed") && text.contains("sluice sim"),
        "{text}"
    );
    assert!(!text.contains("wasm backtrace"), "{text}");
}
