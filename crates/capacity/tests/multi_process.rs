//! Acceptance (issue 5): several real `capacity serve` processes on one
//! fresh PostgreSQL database never overcommit a pool between them.
//!
//! Needs `CAPACITY_TEST_POSTGRES_URL`; without it the test says it was
//! skipped and why, and passes.

use capacity_store_postgres::testing::TestDatabase;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_capacity");
const NOW: &str = "2026-04-15T06:00:00Z";
const PROCESSES: usize = 3;
const REQUESTS: usize = 80;
const SUPPLY: usize = 20;

/// The server processes; killed (and reaped) however the test ends.
struct Servers {
    children: Vec<(Child, PathBuf)>,
}

impl Servers {
    /// Every process's log, for a failure message.
    fn logs(&self) -> String {
        self.children
            .iter()
            .map(|(_, log)| {
                format!(
                    "--- {} ---\n{}",
                    log.display(),
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn capacity(url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("CAPACITY_DATABASE_URL", url)
        .env("CAPACITY_NOW", NOW)
        .env("CAPACITY_LOG_FORMAT", "json")
        .env_remove("CAPACITY_LISTEN")
        .env_remove("CAPACITY_DEMO");
    c
}

/// `capacity tokens create --platform --scope write`: the secret is alone on
/// the last line of standard output.
fn mint_platform_token(url: &str) -> String {
    let out = capacity(url)
        .args(["tokens", "create", "--platform", "--scope", "write"])
        .output()
        .expect("run capacity tokens create");
    assert!(
        out.status.success(),
        "tokens create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    stdout
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_owned()
}

fn start(url: &str, logs: &Path) -> (Servers, Vec<String>) {
    let mut servers = Servers {
        children: Vec::new(),
    };
    let mut bases = Vec::new();
    for i in 0..PROCESSES {
        let port = free_port();
        let log = logs.join(format!("serve-{i}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = capacity(url)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn capacity serve");
        servers.children.push((child, log));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    (servers, bases)
}

async fn wait_ready(client: &reqwest::Client, servers: &mut Servers, bases: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for base in bases {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            for (child, _) in &mut servers.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("a server exited early ({status}):\n{}", servers.logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{base} not ready in time:\n{}",
                servers.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_server_processes_never_overcommit_a_pool() {
    let Some(db) = TestDatabase::from_env("several_server_processes_never_overcommit_a_pool").await
    else {
        return;
    };
    // The first command applies the migrations; the servers then find them done.
    let token = mint_platform_token(&db.url);
    let logs = tempfile::tempdir().expect("a log folder");
    let (mut servers, bases) = start(&db.url, logs.path());
    // reqwest is built without a default TLS provider (rustls with ring is
    // installed by the API crate); any client needs it installed first.
    capacity_api::dispatcher::install_crypto_provider();
    let client = reqwest::Client::new();
    wait_ready(&client, &mut servers, &bases).await;

    let created = client
        .post(format!("{}/v1/capacity", bases[0]))
        .bearer_auth(&token)
        .json(&json!({
            "workspace_id": "WS-26-000021",
            "organization_id": "ORG-26-090500",
            "resource_type": "talent_hours",
            "total": SUPPLY,
        }))
        .send()
        .await
        .expect("create the pool");
    assert_eq!(created.status(), 201, "{}", servers.logs());
    let pool: Value = created.json().await.unwrap();
    let pool_id = pool["data"]["id"].as_str().expect("a pool id").to_owned();

    // All requests start together, each process taking every third one.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let (client, token, pool_id, start) = (
            client.clone(),
            token.clone(),
            pool_id.clone(),
            start.clone(),
        );
        let base = bases[i % bases.len()].clone();
        tasks.spawn(async move {
            start.wait().await;
            let r = client
                .post(format!("{base}/v1/capacity/allocations"))
                .bearer_auth(&token)
                .json(&json!({
                    "capacity_pool_id": pool_id,
                    "service_line_id": format!("LIN-26-{:06}", 100_000 + i),
                    "committed": 1,
                }))
                .send()
                .await
                .expect("a response");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.expect("task");
        match status {
            201 => created += 1,
            409 if body["code"] == "insufficient_capacity" => refused += 1,
            other => panic!("unexpected answer {other}: {body}\n{}", servers.logs()),
        }
    }
    assert_eq!(
        (created, refused),
        (SUPPLY, REQUESTS - SUPPLY),
        "{}",
        servers.logs()
    );

    // Every process sees the same pool: exactly the supply, allocated.
    for base in &bases {
        let r = client
            .get(format!("{base}/v1/capacity/{pool_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let pool: Value = r.json().await.unwrap();
        assert_eq!(pool["data"]["allocated"], json!(SUPPLY), "{pool}");
        assert_eq!(pool["data"]["available"], json!(0), "{pool}");
    }
    let listed: Value = client
        .get(format!(
            "{}/v1/capacity/allocations?capacity_pool_id={pool_id}&limit=100",
            bases[1]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(SUPPLY));
    drop(servers);
}
