//! A minimal HTTP/1.1 responder for `/metrics` on the links' runtime.
//!
//! Owns: the listener, reading one request head per connection, and the
//! answer: `GET /metrics` gets the metrics, any other method on it 405, any
//! other path 404; every answer closes the connection. No keep-alive, no
//! request body, no TLS: bind it to loopback or a private interface.

use super::Scrape;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of the OpenMetrics text format the encoder writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Largest request head read: a scrape's is a few hundred bytes; prevents a
/// client from making the responder buffer without bound.
const REQUEST_HEAD_MAX: usize = 8 * 1024;

/// How long a client may take to send its request head and read the answer:
/// prevents an idle connection from holding a slot forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections answered at once; more are closed unanswered. Prevents a
/// flood of connections from piling up scrapes of the outbox.
const CONNECTIONS_MAX: usize = 8;

/// Binds `address` for [`spawn`]; call it before starting the drain, so a
/// taken port fails the start instead of a running drainer.
pub fn bind(address: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address).with_context(|| {
        format!("cannot serve metrics on {address}: pick a free address for --metrics (e.g. 127.0.0.1:9464)")
    })?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("making the metrics listener on {address} non-blocking"))?;
    Ok(listener)
}

/// Serves `scrape` on `listener` from `runtime` until the process ends.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    scrape: Arc<Scrape>,
) -> anyhow::Result<()> {
    let address = listener.local_addr().ok();
    let listener = {
        let _runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener).context("serving the metrics listener")?
    };
    if let Some(address) = address {
        tracing::info!(target: "sluice", "metrics on http://{address}{METRICS_PATH}");
    }
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    runtime.spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(target: "sluice", "metrics accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(target: "sluice", %peer, "metrics: over {CONNECTIONS_MAX} connections, closed one");
                continue;
            };
            let scrape = Arc::clone(&scrape);
            tokio::spawn(async move {
                if tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, scrape))
                    .await
                    .is_err()
                {
                    tracing::debug!(target: "sluice", %peer, "metrics: a client took over {REQUEST_TIMEOUT:?}");
                }
                drop(slot);
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, scrape: Arc<Scrape>) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let (status, content_type, body) = match request_line(&head) {
        Some(("GET", METRICS_PATH)) => {
            match tokio::task::spawn_blocking(move || scrape.render()).await {
                Ok(Ok(text)) => ("200 OK", CONTENT_TYPE, text),
                Ok(Err(e)) => {
                    tracing::warn!(target: "sluice", "metrics scrape failed: {e}");
                    ("500 Internal Server Error", "text/plain", format!("{e}\n"))
                }
                Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
            }
        }
        Some((_, METRICS_PATH)) => (
            "405 Method Not Allowed",
            "text/plain",
            format!("only GET {METRICS_PATH}\n"),
        ),
        Some(_) => (
            "404 Not Found",
            "text/plain",
            format!("metrics are at {METRICS_PATH}\n"),
        ),
        None => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The client may have gone: nothing to tell it.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request head, up to its blank line; None when the client closed or
/// sent more than `REQUEST_HEAD_MAX` bytes without one.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 || head.len() + n > REQUEST_HEAD_MAX {
            return None;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8(head).ok()
}

/// The method and path of a request head's first line, the query dropped.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let mut parts = head.lines().next()?.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn request_lines_give_method_and_path_without_query() {
        assert_eq!(
            request_line("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line("POST / HTTP/1.0\r\n\r\n"), Some(("POST", "/")));
        assert_eq!(request_line("GET /metrics\r\n\r\n"), None);
        assert_eq!(request_line(""), None);
    }
}
