//! A scripted WebSocket server on 127.0.0.1 port 0: records every text
//! frame a client sends and answers each with what a script says. For
//! tests that must see exactly what a link wrote (its hellos), or a broker
//! the test broker does not imitate.
#![allow(dead_code)]

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// The answer to one frame: frames to send back (JSON text).
pub type Script = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

pub struct Scripted {
    address: SocketAddr,
    frames: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<u32>>,
    acceptor: JoinHandle<()>,
}

impl Scripted {
    pub async fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (seen, count) = (Arc::clone(&frames), Arc::clone(&connections));
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *count.lock().expect("count") += 1;
                tokio::spawn(serve(stream, Arc::clone(&script), Arc::clone(&seen)));
            }
        });
        Scripted {
            address,
            frames,
            connections,
            acceptor,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.address)
    }

    /// Every text frame received so far, parsed, in arrival order.
    pub fn frames(&self) -> Vec<Value> {
        self.frames.lock().expect("frames").clone()
    }

    /// Frames received whose `type` is `kind`.
    pub fn frames_of(&self, kind: &str) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter(|frame| frame["type"] == kind)
            .collect()
    }

    pub fn connections(&self) -> u32 {
        *self.connections.lock().expect("count")
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, script: Script, seen: Arc<Mutex<Vec<Value>>>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        seen.lock().expect("frames").push(frame.clone());
        for answer in script(&frame) {
            if ws.send(Message::text(answer)).await.is_err() {
                return;
            }
        }
    }
}

/// A broker that acknowledges every hello and acks every send, but answers
/// `session_hello` with `unknown_message_type`, as one without session
/// support does (the socket stays open).
pub fn without_sessions() -> Script {
    Arc::new(|frame: &Value| {
        match frame["type"].as_str() {
        Some("hello") => vec![r#"{"type":"hello_ack","presenceId":"p1"}"#.to_string()],
        Some("session_hello") => vec![
            r#"{"type":"error","code":"unknown_message_type","message":"unknown message type: session_hello"}"#
                .to_string(),
        ],
        Some("send") => vec![format!(
            r#"{{"type":"ack","id":{},"messageId":"m1","queued":true}}"#,
            frame["id"]
        )],
        _ => Vec::new(),
    }
    })
}

/// A broker that acknowledges every hello of either kind and nothing else.
pub fn acknowledging() -> Script {
    Arc::new(|frame: &Value| match frame["type"].as_str() {
        Some("hello" | "session_hello") => vec![r#"{"type":"hello_ack"}"#.to_string()],
        _ => Vec::new(),
    })
}

/// A broker that refuses every hello with `code` and `message`.
pub fn refusing(code: &'static str, message: &'static str) -> Script {
    Arc::new(move |_: &Value| {
        vec![format!(
            r#"{{"type":"error","code":"{code}","message":"{message}"}}"#
        )]
    })
}
