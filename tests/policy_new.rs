//! `sluice policy new`: what it writes and what it refuses. The projects it
//! makes are built, tested and loaded live by the `policy-new` walkthrough in
//! docs/writing-a-policy.md (`walkthroughs.rs`).

use crate::common::*;
use std::path::Path;

/// The first ```sh block of a README: what a user runs first.
fn first_shell_block(readme: &Path) -> String {
    let text = std::fs::read_to_string(readme).unwrap();
    let block = text.split("```sh\n").nth(1).unwrap_or_default();
    block.split("```").next().unwrap_or_default().to_string()
}

#[test]
fn a_rust_project_holds_the_hosts_contract_and_names_itself_after_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("Fast_Lane");
    let made = sluice(&["policy", "new", path_str(&project)]);
    let out = stdout(&made);
    assert!(made.status.success(), "{out}{}", stderr(&made));
    assert!(out.contains("the Rust policy `fast-lane`"), "{out}");
    assert!(
        out.trim_end()
            .ends_with("sluice policy test target/wasm32-wasip2/release/fast_lane.wasm"),
        "the next steps must end with `sluice policy test`: {out}"
    );
    let wit = std::fs::read_to_string(project.join("wit/drain.wit")).unwrap();
    let ours = include_str!("../wit/drain.wit");
    assert_eq!(wit, ours, "the WIT must be the host's, as it is");
    let cargo = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"fast-lane\"") && cargo.contains("[workspace]"));
    let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
    assert!(lib.contains("name: \"fast-lane\".into()") && !lib.contains("{{"));
    let first_block = first_shell_block(&project.join("README.md"));
    assert_eq!(
        first_block.trim(),
        "cargo build --release --target wasm32-wasip2"
    );
}

#[test]
fn a_python_project_builds_with_one_script() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("py-lane");
    let made = sluice(&["policy", "new", path_str(&project), "--lang", "python"]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(
        stdout(&made)
            .trim_end()
            .ends_with("sluice policy test policy.wasm")
    );
    let first_block = first_shell_block(&project.join("README.md"));
    assert_eq!(first_block.trim(), "./build.sh");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(project.join("build.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "build.sh must be executable");
    let app = std::fs::read_to_string(project.join("app.py")).unwrap();
    assert!(app.contains("name=\"py-lane\""), "{app}");
}

#[test]
fn it_refuses_a_folder_with_files_and_a_name_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let refused = sluice(&["policy", "new", path_str(dir.path())]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is not empty"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );

    let numeric = dir.path().join("42");
    let refused = sluice(&["policy", "new", path_str(&numeric)]);
    assert!(
        stderr(&refused).contains("must start with a letter"),
        "{}",
        stderr(&refused)
    );
    assert!(!numeric.exists());
    let default = dir.path().join("sluice-default");
    let refused = sluice(&["policy", "new", path_str(&default)]);
    assert!(
        stderr(&refused).contains("embedded default"),
        "{}",
        stderr(&refused)
    );
}
