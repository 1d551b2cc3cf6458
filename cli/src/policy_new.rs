//! `sluice policy new DIR [--lang rust|python]`: a policy project of its own,
//! outside any repository: the contract's WIT at this host's version, a
//! working minimal policy with its tests, and a README whose first shell
//! block builds it. The templates are `cli/templates/`, embedded.

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The componentize-py release the Python template installs and was tested with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The folder to create; its name becomes the policy's name.
    dir: PathBuf,
    /// The language of the policy.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Lang {
    Rust,
    Python,
}

const WIT: &str = include_str!("../../wit/drain.wit");

/// (path in the project, template text, executable)
type File = (&'static str, &'static str, bool);

const RUST: &[File] = &[
    (
        "Cargo.toml",
        include_str!("../templates/rust/Cargo.toml"),
        false,
    ),
    (
        ".gitignore",
        include_str!("../templates/rust/gitignore"),
        false,
    ),
    (
        "README.md",
        include_str!("../templates/rust/README.md"),
        false,
    ),
    (
        "src/lib.rs",
        include_str!("../templates/rust/src/lib.rs"),
        false,
    ),
    (
        "src/rules.rs",
        include_str!("../templates/rust/src/rules.rs"),
        false,
    ),
    ("wit/drain.wit", WIT, false),
];

const PYTHON: &[File] = &[
    ("app.py", include_str!("../templates/python/app.py"), false),
    (
        "rules.py",
        include_str!("../templates/python/rules.py"),
        false,
    ),
    (
        "test_rules.py",
        include_str!("../templates/python/test_rules.py"),
        false,
    ),
    (
        "build.sh",
        include_str!("../templates/python/build.sh"),
        true,
    ),
    (
        ".gitignore",
        include_str!("../templates/python/gitignore"),
        false,
    ),
    (
        "README.md",
        include_str!("../templates/python/README.md"),
        false,
    ),
    ("wit/drain.wit", WIT, false),
];

pub fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = policy_name(&args.dir)?;
    if args.dir.exists()
        && std::fs::read_dir(&args.dir)
            .with_context(|| format!("reading {}", args.dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: give a new folder, or empty this one",
            args.dir.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", &name)
            .replace("{{crate}}", &crate_name)
            .replace("{{contract}}", sluice_contract::VERSION)
            .replace("{{sluice_version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{componentize_py}}", COMPONENTIZE_PY)
    };
    let files = match args.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
    };
    for (path, text, executable) in files {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // The contract is copied as it is; the rest has the names filled in.
        let text = if path.ends_with("wit/drain.wit") {
            (*text).to_string()
        } else {
            fill(text)
        };
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if *executable {
            make_executable(&path)?;
        }
    }
    let dir = args.dir.display();
    let (lang, steps) = match args.lang {
        Lang::Rust => (
            "Rust",
            vec![
                format!("cd {dir}"),
                "cargo build --release --target wasm32-wasip2".to_string(),
                "cargo test".to_string(),
                format!("sluice policy test target/wasm32-wasip2/release/{crate_name}.wasm"),
            ],
        ),
        Lang::Python => (
            "Python",
            vec![
                format!("cd {dir}"),
                "./build.sh".to_string(),
                "./build.sh test".to_string(),
                "sluice policy test policy.wasm".to_string(),
            ],
        ),
    };
    println!(
        "created {dir}: the {lang} policy `{name}` for {}",
        sluice_contract::CONTRACT
    );
    println!("next:");
    for step in steps {
        println!("  {step}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The folder's name as a policy and package name: lowercase letters,
/// digits and dashes, starting with a letter.
fn policy_name(dir: &Path) -> anyhow::Result<String> {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!(
            "{}: the folder's name becomes the policy's name, and must start with a letter (as in `sluice policy new my-policy`)",
            dir.display()
        );
    }
    if name == sluice_policy::POLICY_NAME {
        bail!("`{name}` is the embedded default's name: give the folder another");
    }
    Ok(name)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}
