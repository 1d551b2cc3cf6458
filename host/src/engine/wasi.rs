//! The closed WASI a policy gets.
//!
//! A standard library (Rust's std, CPython) imports WASI whether or not the
//! policy uses it, and a Python component cannot start without it. The host
//! links WASI 0.2 from wasmtime-wasi with nothing behind it:
//!
//! - no files (no directory is preopened), no sockets, no name lookup, no
//!   environment variables, no arguments, an empty stdin;
//! - stdout and stderr go to the policy's log, a line at a time
//!   (`policy_stdout`, `policy_stderr`), so `println!`, `print()` and a
//!   panic message are seen by the operator and change nothing else;
//! - the wall clock, the monotonic clock and both random sources are
//!   answered through the world's `now` and `random_bytes`, the same calls
//!   `env.now` and `env.random-bytes` make, so a trace records them and a
//!   replay answers them: a tick that reads the time through WASI replays
//!   exactly. Outside a tick (while `info` and `configure` run) they answer
//!   0 and zero bytes, as the load-time world does;
//! - waiting on a clock traps (`policy_sleep`): a policy must return from
//!   its tick and let the host schedule the next one.

use super::GuestState;
use sluice_policy::{Level, World};
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
use wasmtime_wasi::p2::bindings::sync::LinkOptions;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The WASI version wasmtime-wasi defines; a component built against any
/// 0.2.x is linked to it (wasmtime matches semver-compatible versions).
const WASI: &str = "0.2.12";

/// The longest line of output kept; the rest of a longer line is cut.
const LINE_MAX: usize = 2000;

/// What a policy instance's store holds for WASI.
pub(super) struct ClosedWasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl ClosedWasi {
    pub(super) fn new(source: &str) -> ClosedWasi {
        let ctx = WasiCtxBuilder::new()
            .stdout(PolicyOutput::new(source, Stream::Stdout))
            .stderr(PolicyOutput::new(source, Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        ClosedWasi {
            ctx,
            table: ResourceTable::new(),
        }
    }
}

impl<W: World + Send> WasiView for GuestState<W> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

impl<W: World> GuestState<W> {
    /// The world's clock during a tick, 0 outside one.
    fn wasi_now_ms(&mut self) -> i64 {
        if !self.in_tick {
            return 0;
        }
        let started = Instant::now();
        let now = self.world.now();
        self.import_time += started.elapsed();
        now
    }

    /// The world's random bytes during a tick, zeros outside one.
    fn wasi_random(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l <= 1 << 20)
            .ok_or_else(|| {
                wasmtime::format_err!(
                    "a policy asked for {len} random bytes at once; at most 1 MiB"
                )
            })?;
        if !self.in_tick {
            return Ok(vec![0; len as usize]);
        }
        let started = Instant::now();
        let bytes = self.world.random_bytes(len);
        self.import_time += started.elapsed();
        Ok(bytes)
    }

    fn wasi_u64(&mut self) -> wasmtime::Result<u64> {
        let bytes = self.wasi_random(8)?;
        let mut word = [0u8; 8];
        for (to, from) in word.iter_mut().zip(bytes) {
            *to = from;
        }
        Ok(u64::from_le_bytes(word))
    }
}

/// Links WASI 0.2, closed as the module's header says.
pub(super) fn add_to_linker<W: World + Send + 'static>(
    linker: &mut Linker<GuestState<W>>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_with_options_sync(linker, &LinkOptions::default())?;
    linker.allow_shadowing(true);
    shadow_clocks_and_random(linker, WASI)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn shadow_clocks_and_random<W: World + Send + 'static>(
    linker: &mut Linker<GuestState<W>>,
    version: &str,
) -> wasmtime::Result<()> {
    let mut wall = linker.instance(&format!("wasi:clocks/wall-clock@{version}"))?;
    wall.func_wrap(
        "now",
        |mut cx: StoreContextMut<'_, GuestState<W>>, (): ()| {
            Ok((datetime(cx.data_mut().wasi_now_ms()),))
        },
    )?;
    wall.func_wrap(
        "resolution",
        |_: StoreContextMut<'_, GuestState<W>>, (): ()| Ok((datetime(1),)),
    )?;

    let mut mono = linker.instance(&format!("wasi:clocks/monotonic-clock@{version}"))?;
    mono.func_wrap(
        "now",
        |mut cx: StoreContextMut<'_, GuestState<W>>, (): ()| {
            let ms = u64::try_from(cx.data_mut().wasi_now_ms()).unwrap_or(0);
            Ok((ms.saturating_mul(1_000_000),))
        },
    )?;
    mono.func_wrap(
        "resolution",
        |_: StoreContextMut<'_, GuestState<W>>, (): ()| Ok((1_000_000u64,)),
    )?;
    for name in ["subscribe-instant", "subscribe-duration"] {
        mono.func_wrap(
            name,
            move |_: StoreContextMut<'_, GuestState<W>>,
                  (_,): (u64,)|
                  -> wasmtime::Result<(Resource<DynPollable>,)> {
                Err(wasmtime::format_err!("{}", sleep_refusal(name)))
            },
        )?;
    }

    for (interface, bytes, word) in [
        ("random", "get-random-bytes", "get-random-u64"),
        (
            "insecure",
            "get-insecure-random-bytes",
            "get-insecure-random-u64",
        ),
    ] {
        let mut random = linker.instance(&format!("wasi:random/{interface}@{version}"))?;
        random.func_wrap(
            bytes,
            |mut cx: StoreContextMut<'_, GuestState<W>>, (len,): (u64,)| {
                Ok((cx.data_mut().wasi_random(len)?,))
            },
        )?;
        random.func_wrap(
            word,
            |mut cx: StoreContextMut<'_, GuestState<W>>, (): ()| Ok((cx.data_mut().wasi_u64()?,)),
        )?;
    }
    let mut seed = linker.instance(&format!("wasi:random/insecure-seed@{version}"))?;
    seed.func_wrap(
        "insecure-seed",
        |mut cx: StoreContextMut<'_, GuestState<W>>, (): ()| {
            let state = cx.data_mut();
            Ok(((state.wasi_u64()?, state.wasi_u64()?),))
        },
    )?;
    Ok(())
}

fn datetime(ms: i64) -> Datetime {
    let ms = u64::try_from(ms).unwrap_or(0);
    Datetime {
        seconds: ms / 1000,
        nanoseconds: u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// stdout or stderr of one policy instance: each line becomes a log line.
struct PolicyOutput {
    source: String,
    stream: Stream,
}

impl PolicyOutput {
    fn new(source: &str, stream: Stream) -> PolicyOutput {
        PolicyOutput {
            source: source.to_string(),
            stream,
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for PolicyOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PolicyOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLog {
            source: self.source.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.2 is linked, and it writes through `p2_stream`.
        Box::new(tokio::io::sink())
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineLog {
    source: String,
    stream: Stream,
    line: Vec<u8>,
}

impl LineLog {
    fn emit(&mut self) {
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if text.ends_with('\r') {
            text.pop();
        }
        if text.len() > LINE_MAX {
            let mut cut = LINE_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let (level, event) = match self.stream {
            Stream::Stdout => (Level::Info, "policy_stdout"),
            Stream::Stderr => (Level::Warn, "policy_stderr"),
        };
        crate::world::policy_log(
            level,
            event,
            &[
                ("policy".to_string(), self.source.clone()),
                ("line".to_string(), format!("{text:?}")),
            ],
        );
    }
}

impl OutputStream for LineLog {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        for &byte in bytes.as_ref() {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() <= LINE_MAX * 4 {
                self.line.push(byte);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLog {
    async fn ready(&mut self) {}
}

impl Drop for LineLog {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

fn sleep_refusal(call: &str) -> String {
    format!(
        "policy_sleep: the policy waited on a clock ({call}); a policy may not sleep or wait: return from the tick, and the host calls it again when a row is due"
    )
}
