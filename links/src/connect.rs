//! One attempt to open a link: TCP, TLS and WebSocket connect, the hello,
//! and the broker's answer to it.
//!
//! Owns: `LinkError`, turning the broker's refusals and refused certificates
//! into errors that say what to do, and telling a broker without session
//! support from a refusal. Does not own: what the hello says (`hello`),
//! which certificates are trusted (`tls`), or trying again (`link`).

use crate::config::{CONNECT_TIMEOUT, HELLO_TIMEOUT, LinkOptions, MeshConfig, websocket_config};
use crate::hello::{Greeting, hello_text};
use crate::hints::refusal_hint;
use crate::identity::now_ms;
use crate::tls::{Attempt, Tls, certificate_problem};
use crate::wire::{self, Inbound};
use crate::writer::WsStream;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::time::timeout;
use tokio_tungstenite::connect_async_tls_with_config;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The error code with which a broker without session support answers a
/// `session_hello`.
const NO_SESSION_SUPPORT: &str = "unknown_message_type";

/// Why a link could not open.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "connecting to {url} failed: {source}; check the broker url and that the broker is running"
    )]
    Connect { url: String, source: Box<WsError> },
    #[error("connecting to {url} failed: {problem}")]
    Certificate { url: String, problem: String },
    #[error("connecting to {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error(
        "connecting to {url} timed out after {CONNECT_TIMEOUT:?}; check the address and the network"
    )]
    ConnectTimeout { url: String },
    #[error("encoding the hello failed: {0}")]
    HelloEncode(#[from] serde_json::Error),
    #[error("sending the hello failed: {0}")]
    HelloWrite(Box<WsError>),
    #[error("broker refused the hello: {code}: {message}; {hint}")]
    Refused {
        code: String,
        message: String,
        hint: &'static str,
    },
    #[error(
        "broker has no session support: it answered session_hello with {NO_SESSION_SUPPORT} ({message}); rows of this session wait until the broker is upgraded"
    )]
    Unsupported { message: String },
    #[error("no hello_ack within {HELLO_TIMEOUT:?}; is this a claudemesh broker?")]
    HelloTimeout,
    #[error("broker closed the socket during the hello: {0}")]
    ClosedDuringHello(String),
}

impl LinkError {
    /// What makes two failures "the same" for the quiet log: the kind, and
    /// for a refusal its code (its message may carry a changing number).
    pub(crate) fn repeat_key(&self) -> String {
        match self {
            LinkError::Refused { code, .. } => format!("refused:{code}"),
            LinkError::HelloTimeout => "hello_timeout".to_string(),
            LinkError::ConnectTimeout { .. } => "connect_timeout".to_string(),
            other => other.to_string(),
        }
    }
}

/// One attempt: connect within `CONNECT_TIMEOUT`, say the hello, and wait
/// up to `HELLO_TIMEOUT` for its answer. `Ok` is a socket ready for sends.
pub(crate) async fn connect_and_hello(
    mesh: &MeshConfig,
    greeting: &Greeting,
    tls: &Tls,
    options: &LinkOptions,
) -> Result<WsStream, LinkError> {
    let url = mesh.broker_url.as_str();
    let attempt = tls.attempt().map_err(|reason| LinkError::Tls {
        url: url.to_string(),
        reason,
    })?;
    // Nagle off: frames are already batched by feed-then-flush, and Nagle
    // would delay the last frame of each burst.
    let connecting = connect_async_tls_with_config(
        url,
        Some(websocket_config()),
        true,
        attempt.connector.clone(),
    );
    let (mut ws, _response) = match timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(LinkError::ConnectTimeout {
                url: url.to_string(),
            });
        }
        Ok(Err(e)) => return Err(connect_error(url, e, &attempt)),
        Ok(Ok(connected)) => connected,
    };
    let hello = hello_text(greeting, mesh, options, now_ms())?;
    ws.send(Message::text(hello))
        .await
        .map_err(|e| LinkError::HelloWrite(Box::new(e)))?;
    let session = matches!(greeting, Greeting::Session(_));
    match timeout(HELLO_TIMEOUT, await_hello_ack(&mut ws, session)).await {
        Err(_) => Err(LinkError::HelloTimeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(ws),
    }
}

fn connect_error(url: &str, error: WsError, attempt: &Attempt) -> LinkError {
    match certificate_problem(&error, attempt) {
        Some(problem) => LinkError::Certificate {
            url: url.to_string(),
            problem,
        },
        None => LinkError::Connect {
            url: url.to_string(),
            source: Box::new(error),
        },
    }
}

/// Reads until `hello_ack` (extra fields ignored) or a refusal; other frames
/// that arrive first (a push racing the ack) are skipped. `session`: the
/// hello was a `session_hello`, so `unknown_message_type` means the broker
/// has no session support rather than a refusal.
async fn await_hello_ack(ws: &mut WsStream, session: bool) -> Result<(), LinkError> {
    while let Some(frame) = ws.next().await {
        let frame = frame.map_err(|e| LinkError::ClosedDuringHello(e.to_string()))?;
        let Message::Text(text) = frame else { continue };
        match wire::parse_inbound(&text) {
            Inbound::HelloAck => return Ok(()),
            Inbound::Error { code, message } if session && *code == *NO_SESSION_SUPPORT => {
                return Err(LinkError::Unsupported {
                    message: message.0.into_owned(),
                });
            }
            Inbound::Error { code, message } => {
                return Err(LinkError::Refused {
                    hint: refusal_hint(&code),
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
