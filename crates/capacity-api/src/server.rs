//! The HTTP/1.1 server loop (hyper, as `axum::serve` drives it, plus what
//! that lacks): a timer, so a connection that does not send a whole request
//! head within [`Limits::header_read_timeout`] is closed (slow-loris); a cap
//! of [`Limits::max_connections`] served at once, one more being answered a
//! fixed 503 problem and closed rather than left waiting in the backlog;
//! the peer's address in each request (`ConnectInfo`), for the rate limit of
//! failed authentications; and graceful shutdown: once `shutdown` resolves
//! no connection is accepted, idle ones are closed and in-flight requests
//! finish.

use crate::Limits;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What a connection over the cap is told before it is closed.
fn too_many() -> &'static [u8] {
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(|| {
        let body = serde_json::json!({
            "type": "/docs#problem-too_many_connections",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "the server is at its connection limit; retry shortly",
            "code": "too_many_connections",
        })
        .to_string();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Per-connection errors (the peer reset it, no file
                // descriptor left for now): skip it and go on, as axum does.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            ::metrics::counter!("capacity_connections_refused_total").increment(1);
            tokio::spawn(async move {
                // Closing a socket with unread input resets it, and the
                // client may lose the answer: read what was sent, answer,
                // then read to the end. A second at most.
                let mut stream = stream;
                let mut sink = [0u8; 4096];
                let refuse = async {
                    let _ = stream.read(&mut sink).await?;
                    stream.write_all(too_many()).await?;
                    stream.shutdown().await?;
                    while stream.read(&mut sink).await? > 0 {}
                    Ok::<_, std::io::Error>(())
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), refuse).await;
            });
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_states_its_length() {
        let text = std::str::from_utf8(super::too_many()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "too_many_connections");
    }
}
