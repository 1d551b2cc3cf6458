//! The docs' walkthroughs, run as written: every ```sh block after a
//! `<!-- walkthrough: NAME -->` line in README.md and docs/*.md, the blocks
//! of one NAME joined in order, as one bash script in an empty folder with
//! the `sluice` binary on PATH.
//!
//! What the harness changes, and nothing else: `cargo install …` lines are
//! skipped (the binary under test is already on PATH); the walkthroughs'
//! fixed ports (77xx, 78xx, 9464) become free ones; a comment with
//! `→ "TEXT"` after a command makes TEXT a check on that command's output,
//! and `→ exit N` one on its exit status. Every other command must succeed
//! (`set -e`); background jobs are stopped at the end. HOME is the empty
//! folder's; the toolchains stay the user's (`CARGO_HOME`, `RUSTUP_HOME`,
//! `PYENV_ROOT` point where they were), and `COMPONENTIZE_PY` names the
//! componentize-py the Python tests use.

use crate::common::*;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The marker line before a block of a walkthrough.
const MARKER: &str = "<!-- walkthrough: ";
/// How long one walkthrough may take before it counts as hung. `policy-new`
/// builds and tests two policies from nothing: about 130 s alone on 2 cores,
/// and more than 240 s beside the other tests of a cold CI run.
const WALKTHROUGH_TIME_MAX: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every walkthrough of `text` (a page): NAME → its blocks' lines, in order.
fn walkthroughs(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let name = rest.trim_end_matches("-->").trim().to_string();
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "walkthrough {name}: the marker must be followed by a ```sh block"
        );
        let block = found.entry(name).or_default();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            block.push(line.to_string());
        }
    }
    found
}

/// A line of a block: a command (lines continued with a trailing backslash
/// joined, so a check comment belongs to the whole command), or a line of a
/// heredoc's body, which is text and never checked.
#[derive(Debug, PartialEq)]
enum Line {
    Command(String),
    Text(String),
}

fn commands(lines: &[String]) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let mut heredoc_end: Option<String> = None;
    let mut continuing = false;
    for line in lines {
        if let Some(end) = &heredoc_end {
            if line.trim() == end {
                heredoc_end = None;
            }
            out.push(Line::Text(line.clone()));
            continue;
        }
        match out.last_mut() {
            Some(Line::Command(last)) if continuing => {
                last.push('\n');
                last.push_str(line);
            }
            _ => out.push(Line::Command(line.clone())),
        }
        continuing = line.trim_end().ends_with('\\');
        if let Some(at) = line.find("<<'") {
            let end = line[at + 3..].split('\'').next().unwrap_or_default();
            heredoc_end = Some(end.to_string());
        }
    }
    out
}

/// One command of the script: as written, or wrapped in its check.
fn script_line(line: &str) -> String {
    if line.trim_start().starts_with("cargo install") {
        return format!(": skipped, the binary under test is on PATH: {line}");
    }
    let Some((command, comment)) = split_comment(line) else {
        return line.to_string();
    };
    let Some(wants) = comment.split_once('→').map(|(_, wants)| wants) else {
        return line.to_string();
    };
    let checks = quoted(wants);
    let status = expected_status(wants);
    if checks.is_empty() && status == 0 {
        return line.to_string();
    }
    let shown = command.trim().replace('\'', "'\\''");
    let mut wrapped = format!(
        "set +e; out=$({} 2>&1); status=$?; set -e; printf '%s\\n' \"$out\"; \
         [ $status = {status} ] || {{ echo 'walkthrough check failed: `{shown}` exited '$status', not {status}'; exit 1; }}",
        command.trim_end()
    );
    for want in checks {
        let want_sh = want.replace('\'', "'\\''");
        wrapped.push_str(&format!(
            "; grep -qF -- '{want_sh}' <<<\"$out\" || {{ echo 'walkthrough check failed: `{shown}` did not print `{want_sh}`'; exit 1; }}"
        ));
    }
    wrapped
}

/// The exit status a check comment expects: N for `exit N` after the
/// arrow, else 0.
fn expected_status(wants: &str) -> i32 {
    wants
        .split_once("exit ")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The command and its trailing comment: the first ` #` outside quotes.
fn split_comment(line: &str) -> Option<(&str, &str)> {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && i > 0 && bytes[i - 1] == b' ' => {
                return Some((&line[..i], &line[i + 1..]));
            }
            _ => {}
        }
    }
    None
}

/// The double-quoted strings of `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The walkthroughs' fixed ports, each replaced by a free one.
fn free_ports(script: &str) -> String {
    let mut script = script.to_string();
    for port in ["7700", "7801", "7802", "9464"] {
        if script.contains(port) {
            let free = free_address();
            let free_port = free.rsplit(':').next().unwrap().to_string();
            script = script.replace(port, &free_port);
        }
    }
    script
}

/// Runs one walkthrough in an empty folder; Err is its output.
fn run(name: &str, lines: &[String]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(sluice_bin()).parent().unwrap().to_path_buf();
    let mut script = String::from(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT\nset -x\n",
    );
    for line in commands(lines) {
        match line {
            Line::Command(command) => script.push_str(&script_line(&command)),
            Line::Text(text) => script.push_str(&text),
        }
        script.push('\n');
    }
    let script = free_ports(&script);
    let path = dir.path().join("walkthrough.sh");
    std::fs::write(&path, &script).unwrap();
    let log = dir.path().join("walkthrough.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let kept = |name: &str, default: &str| {
        std::env::var_os(name).map_or_else(|| home.join(default), PathBuf::from)
    };
    let mut child = Command::new("bash")
        .arg(&path)
        .current_dir(&work)
        .env("PATH", path_var)
        .env("CARGO_HOME", kept("CARGO_HOME", ".cargo"))
        .env("RUSTUP_HOME", kept("RUSTUP_HOME", ".rustup"))
        .env("PYENV_ROOT", kept("PYENV_ROOT", ".pyenv"))
        .env("COMPONENTIZE_PY", componentize_py())
        .env_remove("CARGO_TARGET_DIR")
        .env("HOME", dir.path())
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id().to_string();
    let deadline = Instant::now() + WALKTHROUGH_TIME_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever is left of it (a timed-out script, a job the trap missed).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!(
            "walkthrough {name} failed ({status}):\n{output}\n--- the script:\n{script}"
        )),
        None => Err(format!(
            "walkthrough {name} took over {WALKTHROUGH_TIME_MAX:?}:\n{output}\n--- the script:\n{script}"
        )),
    }
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Every walkthrough of every page runs as written; the ones the docs are
/// known to have must be there (a marker lost in an edit is a failure).
#[test]
fn every_walkthrough_in_the_docs_runs_as_written() {
    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (name, lines) in walkthroughs(&text) {
            for line in &lines {
                // Comments may elide; what runs may not.
                let command = split_comment(line).map_or(line.as_str(), |(command, _)| command);
                assert!(
                    !command.contains('…') && !command.contains("<pid>"),
                    "walkthrough {name} in {} has a placeholder, not a command: {line}",
                    page.display()
                );
            }
            if let Err(e) = run(&name, &lines) {
                failures.push(e);
            }
            ran.push(name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    for expected in [
        "quick-start",
        "two-meshes",
        "operating",
        "changing-the-policy",
        "replay",
        "policy-new",
    ] {
        assert!(
            ran.iter().any(|r| r == expected),
            "no walkthrough named {expected}; ran {ran:?}"
        );
    }
}

#[test]
fn a_check_comment_becomes_a_check_and_other_comments_stay_comments() {
    let checked = script_line("sluice status --config a.toml   # shows it → \"done=1\"");
    assert!(checked.contains("grep -qF -- 'done=1'"), "{checked}");
    let failing =
        script_line("sluice policy load junk.wasm --config a.toml   # → exit 1, \"refused\"");
    assert!(
        failing.contains("[ $status = 1 ]") && failing.contains("'refused'"),
        "{failing}"
    );
    let plain = script_line("sluice status --config a.toml   # counts and links");
    assert_eq!(plain, "sluice status --config a.toml   # counts and links");
    let quoted_hash = script_line("echo '# not a comment → \"x\"'");
    assert!(!quoted_hash.contains("grep"), "{quoted_hash}");
    let joined = commands(&["a \\".to_string(), "  b # → \"y\"".to_string()]);
    assert_eq!(joined.len(), 1);
    let heredoc = commands(&[
        "cat > f <<'EOF'".to_string(),
        "x = 1 # not a check → \"z\"".to_string(),
        "EOF".to_string(),
    ]);
    assert_eq!(heredoc.len(), 3);
    assert!(matches!(&heredoc[1], Line::Text(_)), "{heredoc:?}");
}
