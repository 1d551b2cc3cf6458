//! The on-disk cache of compiled policies.
//!
//! Owns: where the cache lives, the file format, and the one place the host
//! runs precompiled code ([`deserialize`]). Compiling a policy takes tens of
//! milliseconds; loading its precompiled form, well under one.
//!
//! One file per policy and engine: `<dir>/<component sha256>-<engine key>.cwasm`,
//! a header line and then the bytes of `Component::serialize`:
//!
//! ```text
//! sluice-compiled-policy 1 wasmtime=48.0.8 engine=<sha256> component=<sha256> payload=<sha256>
//! ```
//!
//! `engine` hashes the wasmtime version and `Engine::precompile_compatibility_hash`
//! (target, compiler settings, enabled features); `payload` is the SHA-256 of
//! the bytes after the header. A file whose header names another engine, or
//! whose bytes no longer match `payload` (edited, truncated, half-written),
//! is a miss: the policy is compiled again and the file replaced. Files are
//! written to a temporary name and renamed into place, so a reader never
//! sees half a file. The directory is created private (0700) and not used
//! when other users may write to it.

use sha2::{Digest as _, Sha256};
use std::ffi::OsString;
use std::hash::{Hash as _, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Names the cache directory; overrides `$XDG_CACHE_HOME/sluice` and `$HOME/.cache/sluice`.
pub const CACHE_DIR_ENV: &str = "SLUICE_CACHE_DIR";

/// The wasmtime this host is built with (checked against Cargo.lock by a
/// test). Part of the engine key, and written in each header for people.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The first word of every cache file, and the version of its layout.
const MAGIC: &str = "sluice-compiled-policy";
const FORMAT_VERSION: &str = "1";
/// A header is one short line; anything longer is not one.
const HEADER_BYTES_MAX: usize = 512;
/// The cache holds code this process runs: only its user may write there.
const DIR_MODE: u32 = 0o700;
const OTHERS_MAY_WRITE: u32 = 0o022;
/// Hex digits of the engine key in a file name (the header has all 64).
const ENGINE_KEY_NAME_CHARS: usize = 16;

/// Where compiled policies are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyCache {
    /// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else
    /// `$HOME/.cache/sluice`; off when none of them is set.
    FromEnv,
    /// This directory.
    Dir(PathBuf),
    /// Always compile.
    Off,
}

/// What the cache did for one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Not used, and why.
    Off(String),
    /// Loaded from this file without compiling.
    Hit(PathBuf),
    /// Compiled: why the file could not serve, and whether the result was
    /// stored there for the next load.
    Miss {
        path: PathBuf,
        why: String,
        stored: bool,
    },
}

/// The directory `choice` names, created if missing; Err says why the cache is off.
pub(super) fn dir(choice: &PolicyCache) -> Result<PathBuf, String> {
    let dir = match choice {
        PolicyCache::Off => return Err("turned off".into()),
        PolicyCache::Dir(dir) => dir.clone(),
        PolicyCache::FromEnv => dir_from_env(|name| std::env::var_os(name))
            .ok_or_else(|| format!("none of {CACHE_DIR_ENV}, XDG_CACHE_HOME and HOME is set"))?,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(&dir)
        .map_err(|e| format!("cannot create cache directory {}: {e}", dir.display()))?;
    let mode = std::fs::metadata(&dir)
        .map_err(|e| format!("cannot read cache directory {}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & OTHERS_MAY_WRITE != 0 {
        return Err(format!(
            "cache directory {} may be written by other users (mode {:o}) and holds code this process would run: chmod 700 it",
            dir.display(),
            mode & 0o777
        ));
    }
    Ok(dir)
}

/// The cache directory the environment names (empty variables count as unset).
pub(super) fn dir_from_env(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var(CACHE_DIR_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("sluice")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("sluice")))
}

/// What a cache file must say about itself to serve a load.
pub(super) struct Key {
    /// Hex SHA-256 of the wasmtime version and the engine's compatibility hash.
    engine: String,
    /// Hex SHA-256 of the component's bytes.
    component: String,
}

impl Key {
    pub(super) fn new(engine: &Engine, component_sha256: &str) -> Key {
        let mut hasher = Sha256Hasher(Sha256::new());
        WASMTIME_VERSION.hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Key {
            engine: hex::encode(hasher.0.finalize()),
            component: component_sha256.to_string(),
        }
    }

    pub(super) fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!(
            "{}-{}.cwasm",
            self.component,
            &self.engine[..ENGINE_KEY_NAME_CHARS]
        ))
    }

    fn header(&self, payload: &[u8]) -> String {
        format!(
            "{MAGIC} {FORMAT_VERSION} wasmtime={WASMTIME_VERSION} engine={} component={} payload={}\n",
            self.engine,
            self.component,
            hex::encode(Sha256::digest(payload))
        )
    }
}

/// Feeds what `Hash` writes into SHA-256: a digest that is stable across
/// processes and Rust versions, unlike `DefaultHasher`.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Only the full digest is used.
        0
    }
}

/// The component stored at `path` for `key`; Err says why it cannot serve.
pub(super) fn read(engine: &Engine, path: &Path, key: &Key) -> Result<Component, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("not cached yet".into()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let verified = verify(&bytes, key)?;
    deserialize(engine, &verified).map_err(|e| format!("wasmtime refused the cached code: {e}"))
}

/// Stores `payload` for `key` at `path`, atomically.
pub(super) fn write(path: &Path, key: &Key, payload: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    // Created 0600; a crash before the rename leaves only a `.tmp-` file.
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(fail)?;
    file.write_all(key.header(payload).as_bytes())
        .and_then(|()| file.write_all(payload))
        .map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Cached bytes whose header matches the key and whose payload matches the
/// header's checksum. Only [`verify`] makes one.
struct Verified<'a>(&'a [u8]);

fn verify<'a>(bytes: &'a [u8], key: &Key) -> Result<Verified<'a>, String> {
    let end = bytes
        .iter()
        .take(HEADER_BYTES_MAX)
        .position(|b| *b == b'\n')
        .ok_or("the file has no cache header")?;
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| "the file has no cache header")?;
    let payload = &bytes[end + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(MAGIC) {
        return Err("the file has no cache header".into());
    }
    let format = words.next().unwrap_or_default();
    if format != FORMAT_VERSION {
        return Err(format!(
            "the file is in cache format {format}; this host writes format {FORMAT_VERSION}"
        ));
    }
    let field = |name: &str| {
        header
            .split(' ')
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("?")
    };
    let wasmtime = field("wasmtime");
    if wasmtime != WASMTIME_VERSION {
        return Err(format!(
            "built by wasmtime {wasmtime}; this host runs wasmtime {WASMTIME_VERSION}"
        ));
    }
    if field("engine") != key.engine {
        return Err("built for another engine configuration".into());
    }
    if field("component") != key.component {
        return Err(format!("holds another component ({})", field("component")));
    }
    if field("payload") != hex::encode(Sha256::digest(payload)) {
        return Err("its bytes changed after they were written (checksum mismatch)".into());
    }
    Ok(Verified(payload))
}

/// Makes a component of precompiled code: the only `unsafe` in Sluice.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &Verified<'_>) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime runs these bytes as machine code without validating
    // them, so they must be what `Component::serialize` produced. They are:
    // `Verified` exists only for bytes whose SHA-256 matches the checksum
    // this program wrote next to them when it serialized a component it had
    // just compiled, for this wasmtime version and engine configuration (so
    // corruption, truncation and edits are caught); the file lives in a
    // directory this program created 0700 and refuses to use when other
    // users may write there, so only this user could have forged it, and
    // this user can already run any code as themselves. wasmtime checks its
    // own version and configuration header again and refuses a mismatch.
    unsafe { Component::deserialize(engine, code.0) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_cache_directory_follows_sluice_then_xdg_then_home() {
        let all = [
            (CACHE_DIR_ENV, "/s"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir_from_env(env(&all)), Some(PathBuf::from("/s")));
        assert_eq!(
            dir_from_env(env(&all[1..])),
            Some(PathBuf::from("/x/sluice"))
        );
        assert_eq!(
            dir_from_env(env(&[(CACHE_DIR_ENV, ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/sluice"))
        );
        assert_eq!(dir_from_env(env(&[])), None);
    }

    #[test]
    fn the_directory_is_created_private_and_refused_when_others_may_write() {
        let tmp = tempfile::tempdir().unwrap();
        let made = tmp.path().join("a").join("cache");
        assert_eq!(dir(&PolicyCache::Dir(made.clone())), Ok(made.clone()));
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, DIR_MODE);

        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = dir(&PolicyCache::Dir(made)).unwrap_err();
        assert!(
            refused.contains("other users") && refused.contains("chmod 700"),
            "{refused}"
        );
    }

    /// Code from an engine of another configuration, under a header that
    /// checks out, is refused by wasmtime: a miss, not a crash.
    #[test]
    fn code_of_another_engine_configuration_is_refused_by_wasmtime() {
        let engine = super::super::compile::shared_engine().unwrap();
        let mut config = super::super::compile::engine_config();
        config.epoch_interruption(false);
        let other = Engine::new(&config).unwrap();
        let foreign = Component::from_binary(&other, super::super::DEFAULT_POLICY_WASM)
            .unwrap()
            .serialize()
            .unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let key = Key::new(engine, "00");
        let path = key.path(tmp.path());
        write(&path, &key, &foreign).unwrap();
        let why = read(engine, &path, &key).err().unwrap();
        assert!(why.starts_with("wasmtime refused"), "{why}");
        assert_ne!(Key::new(&other, "00").engine, key.engine);
    }

    #[test]
    fn a_header_that_is_not_one_is_a_miss() {
        let engine = super::super::compile::shared_engine().unwrap();
        let key = Key::new(engine, "00");
        for bytes in [
            &b""[..],
            b"\0asm",
            b"sluice-compiled-policy 2 x\n",
            &[b'a'; 2000],
        ] {
            let why = verify(bytes, &key).err().unwrap();
            assert!(why.contains("header") || why.contains("format 2"), "{why}");
        }
    }

    #[test]
    fn the_wasmtime_version_is_the_one_in_cargo_lock() {
        let lock = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.split("version = \"").nth(1))
            .and_then(|v| v.split('"').next())
            .unwrap();
        assert_eq!(
            locked, WASMTIME_VERSION,
            "set cache::WASMTIME_VERSION to the wasmtime in Cargo.lock"
        );
    }
}
