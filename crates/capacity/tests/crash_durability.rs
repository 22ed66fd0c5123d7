//! Durability under a crash: the real server binary on a SQLite file, many
//! concurrent allocation creates, `kill -9` in the middle of the load, a
//! restart on the same file — and every allocation that was answered 201
//! must still be there. Group commit answers a write only after the commit
//! that holds it is durable, so no answered write may be lost.
//!
//! (A process crash, not a power cut: what this proves is the order "commit,
//! then answer". `synchronous=FULL` is what carries it through a power cut.)
//! No timed assertions: the load stops after a bounded number of requests,
//! and the kill comes after a number of answers, not after a time.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const NOW: &str = "2026-04-15T06:00:00Z";
const WRITERS: usize = 32;
/// Each writer stops after this many requests even if the kill never came.
const MAX_PER_WRITER: usize = 400;
/// The kill comes once this many creates have been answered 201.
const KILL_AFTER: usize = 300;

fn capacity(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capacity"));
    c.env("CAPACITY_NOW", NOW)
        .env("CAPACITY_DATABASE_URL", url)
        .env("RUST_LOG", "warn");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(url: &str, client: &reqwest::Client) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = capacity(url)
        .args(["serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let mut server = Server {
        child,
        base: format!("http://{listen}"),
    };
    for _ in 0..2000 {
        if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
            && r.status().is_success()
        {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the server exited before it was ready: {status}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the server never answered /healthz");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_creates_loses_no_answered_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let demo = capacity(&url).arg("demo").output().unwrap();
    assert!(demo.status.success(), "capacity demo failed: {demo:?}");
    let minted = capacity(&url)
        .args(["tokens", "create", "--platform", "--scope", "write"])
        .output()
        .unwrap();
    assert!(minted.status.success(), "tokens create failed: {minted:?}");
    let token = String::from_utf8(minted.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    capacity_api::dispatcher::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();

    let mut server = start(&url, &client).await;
    let pool: serde_json::Value = client
        .post(format!("{}/v1/capacity", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "workspace_id": "WS-26-777001",
            "organization_id": "ORG-26-777000",
            "resource_type": "talent_hours",
            "total": 1_000_000
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pool_id = pool["data"]["id"].as_str().unwrap().to_owned();

    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, token, pool_id, answered) = (
            client.clone(),
            token.clone(),
            pool_id.clone(),
            answered.clone(),
        );
        let url = format!("{}/v1/capacity/allocations", server.base);
        writers.push(tokio::spawn(async move {
            for i in 0..MAX_PER_WRITER {
                let body = serde_json::json!({
                    "capacity_pool_id": pool_id,
                    "service_line_id": format!("LIN-26-7{w:02}{i:06}"),
                    "committed": 1
                });
                let Ok(res) = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                else {
                    return; // the server is gone
                };
                let status = res.status().as_u16();
                let Ok(v) = res.json::<serde_json::Value>().await else {
                    return;
                };
                assert_eq!(status, 201, "create answered {status}: {v}");
                let id = v["data"]["id"].as_str().unwrap().to_owned();
                answered.lock().unwrap().push(id);
            }
        }));
    }

    // Kill -9 once enough creates are answered (or once the load is over).
    while answered.lock().unwrap().len() < KILL_AFTER && !writers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.child.kill().expect("kill -9 the server");
    server.child.wait().unwrap();
    let in_flight = writers.iter().filter(|w| !w.is_finished()).count();
    for w in writers {
        w.await.expect("a writer panicked");
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= KILL_AFTER.min(WRITERS * MAX_PER_WRITER),
        "only {} creates were answered",
        answered.len()
    );
    let unique: std::collections::HashSet<&String> = answered.iter().collect();
    assert_eq!(unique.len(), answered.len(), "an id was answered twice");
    eprintln!(
        "killed with {in_flight} writers in flight; {} creates had been answered 201",
        answered.len()
    );

    let server = start(&url, &client).await;
    let mut lost = Vec::new();
    for id in &answered {
        let res = client
            .get(format!("{}/v1/capacity/allocations/{id}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if res.status().as_u16() != 200 {
            lost.push((id.clone(), res.status().as_u16()));
        }
    }
    assert!(
        lost.is_empty(),
        "{} answered allocations are gone after the crash: {lost:?}",
        lost.len()
    );
}
