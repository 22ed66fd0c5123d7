//! The benchmark baseline: the practical ceiling of the HTTP stack on this
//! machine. The same axum and tokio the service uses, answering every request
//! with a fixed JSON body shaped like the seed's pool list (about 640 bytes)
//! and doing no I/O, no auth and no middleware. `bench/run.sh` measures it in
//! the same run as the service and reports every figure as a ratio to it.
#![forbid(unsafe_code)]

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;

/// The seed's `GET /v1/capacity?workspace_id=WS-26-000021` answer, without
/// the optional `unit_price`.
const BODY: &str = include_str!("pool_list.json");

async fn fixed() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .skip_while(|a| a != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("bench-baseline listening on {listen}");
    axum::serve(listener, Router::new().fallback(fixed)).await
}
