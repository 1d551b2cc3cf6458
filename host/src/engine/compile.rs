//! The process's one wasmtime [`Engine`], and turning policy bytes into a
//! [`Component`]: from the compile cache when it holds them, else by
//! compiling (and storing the result for the next load).
//!
//! One engine for every policy makes a swap cost a compile (or a cache read)
//! and nothing more, and lets one epoch clock serve every store.

use super::LoadError;
use super::cache::{self, CacheStatus, Key, PolicyCache};
use super::limits;
use std::sync::OnceLock;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// The engine every policy runs on, with its epoch clock started.
pub(super) fn shared_engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine = Engine::new(&engine_config()).map_err(|e| e.to_string())?;
            limits::start_epoch_clock(&engine)
                .map_err(|e| format!("cannot start the epoch clock thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The configuration of [`shared_engine`]; the compile cache is keyed by it.
pub(super) fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // One compile of a small component at a time: threads would only add
    // their arenas to the peak resident memory.
    config.parallel_compilation(false);
    config
}

/// The compiled component of `bytes` (whose hex SHA-256 is `sha256`), and
/// what the cache did. A cache that cannot be read or written only costs
/// the compile; it is never an error.
pub(super) fn obtain(
    engine: &Engine,
    source: &str,
    bytes: &[u8],
    sha256: &str,
    choice: &PolicyCache,
) -> Result<(Component, CacheStatus), LoadError> {
    let dir = match cache::dir(choice) {
        Ok(dir) => dir,
        Err(why) => {
            tracing::debug!(target: "sluice", "policy {source}: compile cache not used: {why}");
            return Ok((compile(engine, source, bytes)?, CacheStatus::Off(why)));
        }
    };
    let key = Key::new(engine, sha256);
    let path = key.path(&dir);
    let why = match cache::read(engine, &path, &key) {
        Ok(component) => return Ok((component, CacheStatus::Hit(path))),
        Err(why) => why,
    };
    let component = compile(engine, source, bytes)?;
    let stored = component
        .serialize()
        .map_err(|e| format!("cannot serialize: {e}"))
        .and_then(|payload| cache::write(&path, &key, &payload));
    match &stored {
        Ok(()) => {
            tracing::debug!(target: "sluice", "policy {source}: compiled ({why}); stored in {}", path.display())
        }
        Err(e) => {
            tracing::debug!(target: "sluice", "policy {source}: compiled ({why}); not stored, the next load compiles again: {e}")
        }
    }
    Ok((
        component,
        CacheStatus::Miss {
            path,
            why,
            stored: stored.is_ok(),
        },
    ))
}

/// Compiles `bytes`, telling a core module and non-WebAssembly apart.
fn compile(engine: &Engine, source: &str, bytes: &[u8]) -> Result<Component, LoadError> {
    Component::from_binary(engine, bytes).map_err(|e| {
        if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
            LoadError::CoreModule {
                source_name: source.to_string(),
            }
        } else {
            LoadError::NotComponent {
                source_name: source.to_string(),
                cause: super::root_cause(&e),
            }
        }
    })
}
