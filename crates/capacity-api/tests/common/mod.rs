//! `spawn_app()`: the real router on a random port, over a fresh database
//! with the seed dataset and a pinned clock, plus a token of every kind.
//!
//! The database is a fresh SQLite file, or, with
//! `CAPACITY_TEST_BACKEND=postgres`, a fresh PostgreSQL database on the
//! server named by `CAPACITY_TEST_POSTGRES_URL` (dropped after the test).
#![allow(dead_code)]

use capacity_api::auth::{generate_secret, hash_secret};
use capacity_api::{AppState, Clock};
use capacity_domain::{Instant, OrgId, WorkspaceId};
use capacity_store::{Access, NewToken, Store, TokenKind};
use serde_json::Value;
use std::sync::Arc;

pub const NOW: &str = "2026-04-15T06:00:00Z";
pub const ORG: &str = "ORG-26-090500";
pub const WS: &str = "WS-26-000021";
pub const OTHER_ORG: &str = "ORG-26-000777";

pub struct Tokens {
    pub platform: String,
    pub platform_read: String,
    pub org_write: String,
    pub org_read: String,
    /// ORG-26-090500, narrowed to a workspace that is not the seed's.
    pub org_other_workspace: String,
    pub other_org: String,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub tokens: Tokens,
    pub clock: Clock,
    pub store: Arc<dyn Store>,
    /// The server's cache of authenticated tokens.
    pub token_cache: Arc<capacity_api::auth::TokenCache>,
    pub limits: capacity_api::Limits,
    _db: Backing,
}

/// What holds the test's database until the test ends.
enum Backing {
    Sqlite(tempfile::TempDir),
    Postgres(capacity_store_postgres::testing::TestDatabase),
}

/// A fresh store of the backend chosen by `CAPACITY_TEST_BACKEND`
/// (`sqlite`, the default, or `postgres`).
async fn fresh_store() -> (Arc<dyn Store>, Backing) {
    match std::env::var("CAPACITY_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            use capacity_store_postgres::testing::{TestDatabase, URL_VAR};
            let server = std::env::var(URL_VAR).unwrap_or_default();
            assert!(
                !server.is_empty(),
                "CAPACITY_TEST_BACKEND=postgres needs {URL_VAR} \
                 (a PostgreSQL server the tests may create databases on)"
            );
            let db = TestDatabase::create(&server)
                .await
                .unwrap_or_else(|e| panic!("no test database on {server}: {e}"));
            let store = capacity_store_postgres::PostgresStore::open(&db.url)
                .await
                .unwrap_or_else(|e| panic!("open {}: {e}", db.url));
            (Arc::new(store), Backing::Postgres(db))
        }
        Ok("sqlite") | Ok("") | Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let store =
                capacity_store_sqlite::SqliteStore::open(dir.path().join("test.db")).unwrap();
            (Arc::new(store), Backing::Sqlite(dir))
        }
        Ok(other) => panic!("CAPACITY_TEST_BACKEND must be sqlite or postgres, not {other:?}"),
    }
}

pub fn at(s: &str) -> Instant {
    Instant::parse(s).unwrap()
}

async fn mint(
    store: &dyn Store,
    kind: TokenKind,
    org: Option<&str>,
    ws: &[&str],
    access: Access,
) -> String {
    let secret = generate_secret();
    store
        .create_token(
            NewToken {
                kind,
                organization_id: org.map(|o| OrgId::parse(o).unwrap()),
                workspaces: ws.iter().map(|w| WorkspaceId::parse(w).unwrap()).collect(),
                access,
                hash: hash_secret(&secret),
            },
            at(NOW),
        )
        .await
        .unwrap();
    secret
}

/// Mints a token straight through the store, as `spawn` does for its own
/// tokens: for tests that need tenants of their own.
pub async fn mint_token(
    store: &dyn Store,
    kind: TokenKind,
    org: Option<&str>,
    ws: &[&str],
    access: Access,
) -> String {
    mint(store, kind, org, ws, access).await
}

/// A fresh app with the seed dataset loaded.
pub async fn spawn_app() -> TestApp {
    spawn(true, capacity_api::Limits::default()).await
}

/// A fresh app on an empty database.
pub async fn spawn_empty_app() -> TestApp {
    spawn(false, capacity_api::Limits::default()).await
}

/// A fresh app with the seed dataset and these operational limits.
pub async fn spawn_app_with_limits(limits: capacity_api::Limits) -> TestApp {
    spawn(true, limits).await
}

/// A fresh app with the seed dataset and its settings changed by `tweak`
/// (after the tests' defaults: private webhooks allowed, a 20 ms dispatch interval).
pub async fn spawn_app_with_settings(tweak: impl FnOnce(&mut capacity_api::Settings)) -> TestApp {
    spawn_configured(true, capacity_api::Limits::default(), tweak).await
}

async fn spawn(seed: bool, limits: capacity_api::Limits) -> TestApp {
    spawn_configured(seed, limits, |_| {}).await
}

async fn spawn_configured(
    seed: bool,
    limits: capacity_api::Limits,
    tweak: impl FnOnce(&mut capacity_api::Settings),
) -> TestApp {
    capacity_api::dispatcher::install_crypto_provider();
    let (store, backing) = fresh_store().await;
    let clock = Clock::pinned(at(NOW));
    if seed {
        assert!(
            capacity_api::demo::load(store.as_ref(), clock.now())
                .await
                .unwrap()
        );
    }
    let s = store.as_ref();
    let tokens = Tokens {
        platform: mint(s, TokenKind::Platform, None, &[], Access::Write).await,
        platform_read: mint(s, TokenKind::Platform, None, &[], Access::Read).await,
        org_write: mint(s, TokenKind::Organization, Some(ORG), &[], Access::Write).await,
        org_read: mint(s, TokenKind::Organization, Some(ORG), &[], Access::Read).await,
        org_other_workspace: mint(
            s,
            TokenKind::Organization,
            Some(ORG),
            &["WS-26-000999"],
            Access::Write,
        )
        .await,
        other_org: mint(
            s,
            TokenKind::Organization,
            Some(OTHER_ORG),
            &[],
            Access::Write,
        )
        .await,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut state = test_state(store.clone(), clock.clone());
    let mut settings = (*state.settings).clone();
    tweak(&mut settings);
    state.settings = Arc::new(settings);
    let token_cache = state.tokens.clone();
    tokio::spawn(capacity_api::serve_with(
        listener,
        state,
        limits.clone(),
        std::future::pending(),
    ));
    TestApp {
        base,
        client: reqwest::Client::new(),
        tokens,
        clock,
        store,
        token_cache,
        limits,
        _db: backing,
    }
}

fn test_state(store: Arc<dyn Store>, clock: Clock) -> AppState {
    let mut state = AppState::new(store, clock);
    // Webhook receivers in tests listen on loopback.
    state.settings = Arc::new(capacity_api::Settings {
        allow_private_webhooks: true,
        dispatch_interval: std::time::Duration::from_millis(20),
        ..capacity_api::Settings::default()
    });
    state
}

impl TestApp {
    /// A second server process on the same database (as after a restart):
    /// its base URL once it accepts connections.
    pub async fn start_another_server(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(capacity_api::serve_with(
            listener,
            test_state(self.store.clone(), self.clock.clone()),
            self.limits.clone(),
            std::future::pending(),
        ));
        base
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        answer(req.send().await.unwrap()).await
    }
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send("POST", path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send("PATCH", path, Some(token), Some(body)).await
    }
    /// The platform activates `line` in the seed's workspace: service lines
    /// are the platform's, an organization token names only registered ones.
    #[allow(dead_code)]
    pub async fn activate_line(&self, line: &str) {
        let put = self
            .send(
                "PUT",
                &format!("/v1/service-lines/{line}"),
                Some(&self.tokens.platform),
                Some(serde_json::json!({"workspace_id": WS, "status": "active"})),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.body);
    }
}

pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Every field of `expected` is in `actual` with the same value (objects
/// recursively; arrays element by element).
pub fn assert_subset(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} is missing in {actual}"));
                assert_subset(av, ev, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(
                a.len(),
                e.len(),
                "{path}: array lengths differ: {actual} vs {expected}"
            );
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                assert_subset(av, ev, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

/// Asserts a problem+json answer with this status and code.
pub fn assert_problem(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "status of {}", a.body);
    assert_eq!(
        a.headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "content type of {}",
        a.body
    );
    assert_eq!(a.body["code"], code, "code of {}", a.body);
    assert_eq!(a.body["status"], status);
    assert!(
        a.body["title"].is_string() && a.body["detail"].is_string() && a.body["type"].is_string()
    );
}

/// The DOM of `url` as headless Chromium (Debian's package) renders it,
/// with every host but loopback unresolvable; `None` where no chromium is
/// installed (the caller says it skipped).
#[allow(dead_code)]
pub async fn rendered_dom(url: String) -> Option<String> {
    let browser = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=10000",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
