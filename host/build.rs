//! Builds the default policy (`guest/`) as a wasm32-wasip2 component and
//! leaves it in `OUT_DIR` for `include_bytes!`; builds the outage-aware
//! policy (`guest-outage/`) next to it for the tests and benches
//! (`SLUICE_OUTAGE_POLICY_WASM`) and for users, as
//! `target/<profile>/sluice-outage-aware.wasm`.
//!
//! The nested cargo gets its own target directory (sharing the outer one
//! deadlocks on its lock) and an environment without the host's compiler
//! flags (they break the wasm link).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    for path in [
        "wit",
        "Cargo.toml",
        "Cargo.lock",
        "guest/src",
        "guest/Cargo.toml",
        "guest-outage/src",
        "guest-outage/Cargo.toml",
        "contract/src",
        "contract/Cargo.toml",
        "policy/src",
        "policy/Cargo.toml",
        "outage/src",
        "outage/Cargo.toml",
        "tests/golden",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    check_target_installed();
    let target_root =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The default policy, embedded in the binary.
    let default = build_guest(&root, &DEFAULT_GUEST, &target_root.join("wasm-guest"), &[]);
    copy(&default, &out_dir.join("default_policy.wasm"));
    // The same guest with deliberate faults: the tests find it through this
    // variable; the binary carries it only for `sluice policy bundled`, to try
    // validation and rollback with (it behaves as the default until a
    // `fault` setting is given).
    let faulty = build_guest(
        &root,
        &DEFAULT_GUEST,
        &target_root.join("wasm-guest-faults"),
        &["--features", "faults"],
    );
    let faulty_copy = out_dir.join("faulty_policy.wasm");
    copy(&faulty, &faulty_copy);
    println!(
        "cargo:rustc-env=SLUICE_FAULTY_POLICY_WASM={}",
        faulty_copy.display()
    );
    // The outage-aware policy: the tests find it through this variable, a
    // user next to `target/<profile>/sluice` (`sluice run --policy …`).
    let outage = build_guest(
        &root,
        &OUTAGE_GUEST,
        &target_root.join("wasm-guest-outage"),
        &[],
    );
    let outage_copy = out_dir.join("outage_policy.wasm");
    copy(&outage, &outage_copy);
    println!(
        "cargo:rustc-env=SLUICE_OUTAGE_POLICY_WASM={}",
        outage_copy.display()
    );
    write_golden_index(
        &root.join("tests/golden"),
        &out_dir.join("golden_traces.rs"),
    );
    if let Ok(profile) = env::var("PROFILE") {
        let public = target_root.join(profile);
        let _ = fs::create_dir_all(&public);
        copy(&outage, &public.join(OUTAGE_WASM_NAME));
        // The embedded default as a file too, to swap back to by hand; and
        // the test build with deliberate faults (`--setting fault=trap`),
        // to watch a rollback.
        copy(&default, &public.join(DEFAULT_WASM_NAME));
        copy(&faulty, &public.join(FAULTY_WASM_NAME));
    }
}

/// The guest crates: package and the name of the `.wasm` cargo makes.
struct Guest {
    package: &'static str,
    artifact: &'static str,
}

const DEFAULT_GUEST: Guest = Guest {
    package: "sluice-guest",
    artifact: "sluice_guest.wasm",
};
const OUTAGE_GUEST: Guest = Guest {
    package: "sluice-guest-outage",
    artifact: "sluice_guest_outage.wasm",
};
/// The workspace profile the guests are built with (the root Cargo.toml).
const PROFILE: &str = "guest";
/// The outage-aware component's name next to the `sluice` binary.
const OUTAGE_WASM_NAME: &str = "sluice-outage-aware.wasm";
/// The default policy's name next to the `sluice` binary.
const DEFAULT_WASM_NAME: &str = "sluice-default.wasm";
/// The faulty test policy's name next to the `sluice` binary.
const FAULTY_WASM_NAME: &str = "sluice-faulty.wasm";

fn build_guest(root: &Path, guest: &Guest, target_dir: &Path, extra: &[&str]) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--locked",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
        ])
        .args(["--package", guest.package])
        .args(extra)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // Source paths end up in the component (panic locations): map them to
    // fixed names so no local path leaks into it. With that, and with every
    // crate of the guest inside its workspace (cargo then hashes package
    // paths relative to the workspace root), the same source gives the same
    // component, byte for byte, in any checkout folder.
    let mut flags = format!("--remap-path-prefix={}=/sluice", root.display());
    let cargo_home = env::var_os("CARGO_HOME")
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into_os_string()));
    if let Some(home) = cargo_home {
        flags.push_str(&format!(
            "\x1f--remap-path-prefix={}=/cargo",
            Path::new(&home).display()
        ));
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    command.env("CARGO_ENCODED_RUSTFLAGS", flags);
    let output = command
        .output()
        .expect("could not start cargo to build the guest policy");
    let log = target_dir.join("build.log");
    let _ = fs::create_dir_all(target_dir);
    let _ = fs::write(&log, &output.stderr);
    if !output.status.success() {
        panic!(
            "building the policy {} {extra:?} for {TARGET} failed; its output (also in {}):\n{}",
            guest.package,
            log.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    target_dir.join(TARGET).join(PROFILE).join(guest.artifact)
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}

/// Fails early, with the fix, when the wasm target is missing: this
/// environment does not install a toolchain's targets by itself.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok();
    let Some(sysroot) = sysroot.filter(|o| o.status.success()) else {
        return;
    };
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    if !lib.exists() {
        panic!(
            "the Rust target {TARGET} is not installed, and Sluice's default policy is built for it.\n\
             Fix: run `rustup toolchain install` in the repository (it installs the toolchain and the \
             targets rust-toolchain.toml names), or `rustup target add {TARGET}`."
        );
    }
}

/// Writes `out`: the golden traces as a Rust slice of (file name, bytes),
/// for `include!`, so the binary carries them (`sluice policy bundled`).
fn write_golden_index(dir: &Path, out: &Path) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".trace"))
        .collect();
    names.sort();
    let mut text = String::from("&[\n");
    for name in names {
        let path = dir.join(&name);
        text.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}) as &[u8]),\n",
            path.display().to_string()
        ));
    }
    text.push_str("]\n");
    fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
