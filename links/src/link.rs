//! The life of one daemon link: connect, hello, run open, lose, back off,
//! connect again — forever, until shutdown.
//!
//! Owns: the connect and hello steps, the link's published state, and
//! refusing batches (`link_not_open`) while not open, so a caller never
//! waits on a link that cannot send. Does not own: the open socket's loop
//! (`connection`) or the delay arithmetic (`backoff`).

use crate::backoff::{jitter_seed, reconnect_delay};
use crate::config::{
    CONNECT_TIMEOUT, HELLO_TIMEOUT, LinkOptions, LinkState, MeshConfig, websocket_config,
};
use crate::connection::{Batch, Ended, run_open};
use crate::identity::{daemon_hello_message, now_ms};
use crate::wire::{self, Inbound};
use crate::writer::WsStream;
use futures_util::{SinkExt as _, StreamExt as _};
use sluice_policy::SendResult;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Once};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Why a link could not open.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "connecting to {url} failed: {source}; check the broker url and that the broker is running"
    )]
    Connect { url: String, source: Box<WsError> },
    #[error(
        "connecting to {url} timed out after {CONNECT_TIMEOUT:?}; check the address and the network"
    )]
    ConnectTimeout { url: String },
    #[error("encoding the hello failed: {0}")]
    HelloEncode(#[from] serde_json::Error),
    #[error("sending the hello failed: {0}")]
    HelloWrite(Box<WsError>),
    #[error(
        "broker refused the hello: {code}: {message}; check mesh_id, member_id and the member key"
    )]
    Refused { code: String, message: String },
    #[error("no hello_ack within {HELLO_TIMEOUT:?}; is this a claudemesh broker?")]
    HelloTimeout,
    #[error("broker closed the socket during the hello: {0}")]
    ClosedDuringHello(String),
}

/// Everything one link task owns.
pub(crate) struct LinkTask {
    pub mesh: MeshConfig,
    pub options: Arc<LinkOptions>,
    pub commands: mpsc::Receiver<Batch>,
    pub state: watch::Sender<LinkState>,
    pub shutdown: watch::Receiver<bool>,
}

impl LinkTask {
    pub(crate) async fn run(self) {
        let LinkTask {
            mesh,
            options,
            mut commands,
            state,
            mut shutdown,
        } = self;
        let slug = mesh.slug.as_str();
        let mut failures: u32 = 0;
        loop {
            state.send_replace(LinkState::Connecting);
            let Some(opened) = while_not_open(
                connect_and_hello(&mesh, &options),
                &mut commands,
                &mut shutdown,
            )
            .await
            else {
                break;
            };
            match opened {
                Ok(ws) => {
                    failures = 0;
                    state.send_replace(LinkState::Open);
                    tracing::info!(target: "sluice", mesh = slug, url = %mesh.broker_url, "broker link open");
                    match run_open(ws, slug, &mut commands, &mut shutdown).await {
                        Ended::Shutdown => break,
                        Ended::Lost(reason) => {
                            tracing::warn!(target: "sluice", mesh = slug, "broker link lost: {reason}; reconnecting")
                        }
                    }
                    state.send_replace(LinkState::Connecting);
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    match &e {
                        LinkError::Refused { code, .. } => {
                            tracing::warn!(target: "sluice", mesh = slug, code = %code, "{e}")
                        }
                        _ => tracing::warn!(target: "sluice", mesh = slug, failures, "{e}"),
                    }
                }
            }
            let delay = reconnect_delay(
                failures,
                options.reconnect_min,
                options.reconnect_max,
                jitter_seed(),
            );
            if while_not_open(tokio::time::sleep(delay), &mut commands, &mut shutdown)
                .await
                .is_none()
            {
                break;
            }
        }
        state.send_replace(LinkState::Closed);
        commands.close();
        while let Ok(batch) = commands.try_recv() {
            refuse(batch, "link_not_open");
        }
    }
}

/// Runs `work` while answering every batch that arrives `link_not_open`;
/// `None` when the link is to stop.
async fn while_not_open<F: Future>(
    work: F,
    commands: &mut mpsc::Receiver<Batch>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    let mut work = pin!(work);
    loop {
        tokio::select! {
            biased;
            // A change (only ever to `true`) or a dropped sender: stop.
            _ = shutdown.changed() => return None,
            output = &mut work => return Some(output),
            batch = commands.recv() => match batch {
                Some(batch) => refuse(batch, "link_not_open"),
                None => return None,
            },
        }
    }
}

fn refuse(batch: Batch, reason: &str) {
    let results = vec![SendResult::Failed(reason.to_string()); batch.dispatches.len()];
    let _ = batch.reply.send(results);
}

/// rustls needs a process-wide crypto provider before the first `wss://`
/// connect; another part of the process may have installed one already,
/// which is just as good.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

async fn connect_and_hello(
    mesh: &MeshConfig,
    options: &LinkOptions,
) -> Result<WsStream, LinkError> {
    install_crypto_provider();
    let url = mesh.broker_url.as_str();
    // Nagle off: frames are already batched by feed-then-flush, and Nagle
    // would delay the last frame of each burst.
    let connecting = connect_async_with_config(url, Some(websocket_config()), true);
    let (mut ws, _response) = match timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(LinkError::ConnectTimeout {
                url: url.to_string(),
            });
        }
        Ok(Err(e)) => {
            return Err(LinkError::Connect {
                url: url.to_string(),
                source: Box::new(e),
            });
        }
        Ok(Ok(connected)) => connected,
    };
    ws.send(hello_message(mesh, options)?)
        .await
        .map_err(|e| LinkError::HelloWrite(Box::new(e)))?;
    match timeout(HELLO_TIMEOUT, await_hello_ack(&mut ws)).await {
        Err(_) => Err(LinkError::HelloTimeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(ws),
    }
}

fn hello_message(mesh: &MeshConfig, options: &LinkOptions) -> Result<Message, serde_json::Error> {
    let pubkey = mesh.key.public_hex();
    let timestamp = now_ms();
    let signature = mesh.key.sign_hex(&daemon_hello_message(
        &mesh.mesh_id,
        &mesh.member_id,
        &pubkey,
        timestamp,
    ));
    let hello = wire::Hello {
        kind: "hello".into(),
        mesh_id: mesh.mesh_id.as_str().into(),
        member_id: mesh.member_id.as_str().into(),
        pubkey: pubkey.as_str().into(),
        session_id: options.session_id.as_str().into(),
        pid: options.pid,
        hostname: options.hostname.as_str().into(),
        peer_type: "ai".into(),
        channel: options.channel.as_str().into(),
        timestamp,
        signature: signature.as_str().into(),
    };
    wire::to_message(&hello)
}

/// Reads until `hello_ack` (extra fields ignored) or a refusal; other frames
/// that arrive first (a push racing the ack) are skipped.
async fn await_hello_ack(ws: &mut WsStream) -> Result<(), LinkError> {
    while let Some(frame) = ws.next().await {
        let frame = frame.map_err(|e| LinkError::ClosedDuringHello(e.to_string()))?;
        let Message::Text(text) = frame else { continue };
        match wire::parse_inbound(&text) {
            Inbound::HelloAck => return Ok(()),
            Inbound::Error { code, message } => {
                return Err(LinkError::Refused {
                    code: code.0.into_owned(),
                    message: message.0.into_owned(),
                });
            }
            _ => {}
        }
    }
    Err(LinkError::ClosedDuringHello(
        "closed without an answer".to_string(),
    ))
}
