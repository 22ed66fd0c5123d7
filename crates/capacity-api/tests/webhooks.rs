//! Webhook endpoints and signed, retried delivery (SPEC §5 Events and webhooks).

mod common;
use axum::http::HeaderMap;
use common::*;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, String)>>>);

/// A receiver on loopback that answers `status` to everything.
async fn receiver(status: u16) -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    receiver_on(listener, status).await
}

/// A receiver on `listener` that answers `status` to everything.
async fn receiver_on(listener: tokio::net::TcpListener, status: u16) -> (String, Received) {
    let got = Received::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                g.0.lock().unwrap().push((headers, body));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test]
async fn events_are_delivered_signed_per_standard_webhooks() {
    let app = spawn_app().await;
    let (url, got) = receiver(200).await;
    let t = &app.tokens.org_write;
    let a = app
        .post(
            "/v1/webhook-endpoints",
            t,
            json!({"url": url, "event_types": ["capacity.allocation.updated"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let secret = a.body["data"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = a.body["data"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("WHE-26-"));
    // The secret is shown once.
    let again = app.get(&format!("/v1/webhook-endpoints/{id}"), t).await;
    assert!(again.body["data"].get("secret").is_none());

    app.patch(
        "/v1/capacity/allocations/ALLOC-26-000441",
        t,
        json!({"status": "paused"}),
    )
    .await;
    wait_for(|| !got.0.lock().unwrap().is_empty()).await;
    let (headers, body) = got.0.lock().unwrap()[0].clone();
    let msg_id = headers["webhook-id"].to_str().unwrap();
    let ts: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = capacity_domain::webhook::sign(&secret, msg_id, ts, body.as_bytes()).unwrap();
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "capacity.allocation.updated");
    assert_eq!(event["id"], msg_id);
    assert_eq!(event["data"]["object"]["id"], "ALLOC-26-000441");

    let d = app
        .get(&format!("/v1/webhook-endpoints/{id}/deliveries"), t)
        .await;
    let list = d.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["event_id"], msg_id);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_back_off() {
    let app = spawn_app().await;
    let (url, got) = receiver(500).await;
    let t = &app.tokens.platform;
    // Only this type: the weekly evaluation's events may come at any moment.
    let a = app
        .post(
            "/v1/webhook-endpoints",
            t,
            json!({"url": url, "event_types": ["capacity.allocation.updated"]}),
        )
        .await;
    let id = a.body["data"]["id"].as_str().unwrap().to_owned();
    app.patch(
        "/v1/capacity/allocations/ALLOC-26-000441",
        t,
        json!({"status": "paused"}),
    )
    .await;
    wait_for(|| !got.0.lock().unwrap().is_empty()).await;
    let path = format!("/v1/webhook-endpoints/{id}/deliveries");
    let mut d = serde_json::Value::Null;
    for _ in 0..100 {
        d = app.get(&path, t).await.body;
        if d["data"][0]["attempts"] == json!(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(d["data"][0]["status"], "pending");
    assert_eq!(d["data"][0]["last_status_code"], json!(500));
    assert_eq!(d["data"][0]["next_retry_at"], "2026-04-15T06:00:05Z");
    // Nothing is resent before the retry is due; once the clock passes it, it is.
    assert_eq!(got.0.lock().unwrap().len(), 1);
    app.clock.set(at("2026-04-15T06:00:06Z"));
    wait_for(|| got.0.lock().unwrap().len() >= 2).await;
}

#[tokio::test]
async fn endpoints_are_per_organization() {
    let app = spawn_app().await;
    let (url, _) = receiver(200).await;
    let a = app
        .post(
            "/v1/webhook-endpoints",
            &app.tokens.org_write,
            json!({"url": url}),
        )
        .await;
    let id = a.body["data"]["id"].as_str().unwrap().to_owned();
    assert_problem(
        &app.get(
            &format!("/v1/webhook-endpoints/{id}"),
            &app.tokens.other_org,
        )
        .await,
        404,
        "not_found",
    );
    assert_problem(
        &app.get("/v1/webhook-endpoints", &app.tokens.org_read).await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.post(
            "/v1/webhook-endpoints",
            &app.tokens.org_other_workspace,
            json!({"url": url}),
        )
        .await,
        403,
        "forbidden",
    );
    let del = app
        .send(
            "DELETE",
            &format!("/v1/webhook-endpoints/{id}"),
            Some(&app.tokens.org_write),
            None,
        )
        .await;
    assert_eq!(del.status, 204);
    assert_problem(
        &app.get(
            &format!("/v1/webhook-endpoints/{id}"),
            &app.tokens.org_write,
        )
        .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn endpoint_input_is_validated() {
    let app = spawn_app().await;
    let t = &app.tokens.org_write;
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "http://example.com/x", "event_types": ["capacity.nope"]}),
            "event_types[0]",
        ),
    ] {
        let a = app.post("/v1/webhook-endpoints", t, body).await;
        assert_problem(&a, 422, "validation_failed");
        assert_eq!(a.body["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn private_and_loopback_urls_are_refused_unless_allowed() {
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.5/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://localhost/x",
    ] {
        let net = capacity_api::dispatcher::WebhookNet::default();
        let e = capacity_api::webhooks::check_url(url, false, &net)
            .await
            .unwrap_err();
        assert!(e.contains("private") || e.contains("resolve"), "{url}: {e}");
        assert!(
            capacity_api::webhooks::check_url(url, true, &net)
                .await
                .is_ok()
        );
    }
}

/// A resolver whose answers the test sets per name (a name it has no
/// answer for does not resolve), counting its lookups.
#[derive(Clone, Default)]
struct Dns {
    answers: Arc<Mutex<std::collections::HashMap<String, Vec<Vec<IpAddr>>>>>,
    lookups: Arc<std::sync::atomic::AtomicUsize>,
}

impl Dns {
    /// `name` answers each of `answers` in turn, then the last one forever
    /// (a TTL-0 name whose owner changes its answer at will).
    fn set(&self, name: &str, answers: &[&[IpAddr]]) {
        let answers = answers.iter().map(|a| a.to_vec()).collect();
        self.answers.lock().unwrap().insert(name.into(), answers);
    }
}

impl reqwest::dns::Resolve for Dns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        let answer = answers.get_mut(name.as_str()).map(|list| {
            if list.len() > 1 {
                list.remove(0)
            } else {
                list[0].clone()
            }
        });
        Box::pin(async move {
            let ips = answer.ok_or("no such host")?;
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| (ip, 0).into()).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// In these tests' world 127.0.0.2 is the public internet and every other
/// address is internal: both have receivers on this machine.
const PUBLIC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const INTERNAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

fn internal(ip: IpAddr) -> bool {
    ip != PUBLIC
}

/// An app that refuses internal addresses, resolving names with `dns`.
async fn guarded_app(dns: &Dns, request_timeout: Option<Duration>) -> TestApp {
    let dns = dns.clone();
    spawn_app_with_settings(move |s| {
        s.allow_private_webhooks = false;
        s.webhook_net.resolver = Arc::new(dns);
        s.webhook_net.refused = internal;
        if let Some(t) = request_timeout {
            s.webhook_net.request_timeout = t;
        }
    })
    .await
}

/// A receiver on the internal address and one on the public address, on
/// the same port; the port.
async fn internal_and_public_receivers() -> (u16, Received, Received) {
    let inside = tokio::net::TcpListener::bind((INTERNAL, 0)).await.unwrap();
    let port = inside.local_addr().unwrap().port();
    let outside = tokio::net::TcpListener::bind((PUBLIC, port)).await.unwrap();
    let (_, got_inside) = receiver_on(inside, 200).await;
    let (_, got_outside) = receiver_on(outside, 200).await;
    (port, got_inside, got_outside)
}

async fn subscribe(app: &TestApp, url: &str) -> Answer {
    app.post(
        "/v1/webhook-endpoints",
        &app.tokens.org_write,
        json!({"url": url, "event_types": ["capacity.allocation.updated"]}),
    )
    .await
}

async fn pause_allocation(app: &TestApp) {
    let a = app
        .patch(
            "/v1/capacity/allocations/ALLOC-26-000441",
            &app.tokens.org_write,
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// The endpoint's first delivery once it has been attempted.
async fn first_attempt(app: &TestApp, endpoint: &str) -> serde_json::Value {
    let path = format!("/v1/webhook-endpoints/{endpoint}/deliveries");
    for _ in 0..1500 {
        let d = app.get(&path, &app.tokens.org_write).await.body;
        if d["data"][0]["attempts"] == json!(1) {
            return d["data"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no attempt recorded");
}

/// DNS rebinding: a name that answers a public address while it is checked
/// and an internal one when the sender connects. The sender resolves once,
/// checks every address, and connects only to those.
#[tokio::test]
async fn a_webhook_connects_only_to_the_address_it_checked() {
    let dns = Dns::default();
    let app = guarded_app(&dns, None).await;
    let (port, inside, outside) = internal_and_public_receivers().await;
    // Public for the check at creation and for one more lookup, internal after.
    dns.set("hooks.rebind.test", &[&[PUBLIC], &[PUBLIC], &[INTERNAL]]);
    let e = subscribe(&app, &format!("http://hooks.rebind.test:{port}/hook")).await;
    assert_eq!(e.status, 201, "{}", e.body);
    pause_allocation(&app).await;
    wait_for(|| !inside.0.lock().unwrap().is_empty() || !outside.0.lock().unwrap().is_empty())
        .await;
    assert!(
        inside.0.lock().unwrap().is_empty(),
        "the POST reached the internal address"
    );
    assert_eq!(outside.0.lock().unwrap().len(), 1);
}

/// A name that answers a public and an internal address is refused at send
/// time, and nothing is sent to either.
#[tokio::test]
async fn every_resolved_address_is_checked_at_send_time() {
    let dns = Dns::default();
    let app = guarded_app(&dns, None).await;
    let (port, inside, outside) = internal_and_public_receivers().await;
    dns.set("hooks.mixed.test", &[&[PUBLIC], &[PUBLIC, INTERNAL]]);
    let e = subscribe(&app, &format!("http://hooks.mixed.test:{port}/hook")).await;
    assert_eq!(e.status, 201, "{}", e.body);
    let id = e.body["data"]["id"].as_str().unwrap().to_owned();
    pause_allocation(&app).await;
    let d = first_attempt(&app, &id).await;
    assert_eq!(d["last_error"], "address_not_allowed");
    assert_eq!(d["last_status_code"], json!(null));
    assert!(inside.0.lock().unwrap().is_empty());
    assert!(outside.0.lock().unwrap().is_empty());
}

/// The delivery log says what kind of failure it was, never the socket
/// error's text (which would make it a port scanner's read-out).
#[tokio::test]
async fn the_delivery_log_shows_a_failure_class_not_the_socket_error() {
    let dns = Dns::default();
    let app = guarded_app(&dns, Some(Duration::from_millis(500))).await;
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind((PUBLIC, 0)).await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // One that accepts and never answers.
    let silent = tokio::net::TcpListener::bind((PUBLIC, 0)).await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let (plain_url, _) = receiver_on(
        tokio::net::TcpListener::bind((PUBLIC, 0)).await.unwrap(),
        500,
    )
    .await;
    let plain_port: u16 = plain_url
        .trim_end_matches("/hook")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for name in ["closed", "silent", "status", "gone", "rebound", "tls"] {
        dns.set(&format!("{name}.test"), &[&[PUBLIC]]);
    }
    dns.set("gone.test", &[&[PUBLIC], &[]]);
    dns.set("rebound.test", &[&[PUBLIC], &[INTERNAL]]);
    let cases = [
        (
            format!("http://closed.test:{closed_port}/hook"),
            "connect_failed",
            None,
        ),
        (
            format!("http://silent.test:{silent_port}/hook"),
            "timeout",
            None,
        ),
        (
            format!("http://status.test:{plain_port}/hook"),
            "http_status",
            Some(500),
        ),
        (
            format!("http://gone.test:{plain_port}/hook"),
            "dns_failed",
            None,
        ),
        (
            format!("http://rebound.test:{plain_port}/hook"),
            "address_not_allowed",
            None,
        ),
        (
            format!("https://tls.test:{plain_port}/hook"),
            "tls_failed",
            None,
        ),
    ];
    let mut ids = Vec::new();
    for (url, _, _) in &cases {
        let e = subscribe(&app, url).await;
        assert_eq!(e.status, 201, "{url}: {}", e.body);
        ids.push(e.body["data"]["id"].as_str().unwrap().to_owned());
    }
    pause_allocation(&app).await;
    for ((url, class, code), id) in cases.iter().zip(&ids) {
        let d = first_attempt(&app, id).await;
        assert_eq!(d["last_error"], *class, "{url}: {d}");
        assert_eq!(d["last_status_code"], json!(code), "{url}: {d}");
        assert_eq!(d["status"], "pending", "{url}: retried later");
    }
}

/// 20 endpoints per organization: the 21st answers 409
/// `webhook_endpoint_limit`, a code the OpenAPI document lists for the route.
#[tokio::test]
async fn an_organization_may_have_twenty_webhook_endpoints() {
    let app = spawn_app().await;
    let t = &app.tokens.org_write;
    let mut ids = Vec::new();
    for i in 0..20 {
        let a = app
            .post(
                "/v1/webhook-endpoints",
                t,
                json!({"url": format!("http://127.0.0.1:9/{i}")}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        ids.push(a.body["data"]["id"].as_str().unwrap().to_owned());
    }
    let more = app
        .post(
            "/v1/webhook-endpoints",
            t,
            json!({"url": "http://127.0.0.1:9/more"}),
        )
        .await;
    assert_problem(&more, 409, "webhook_endpoint_limit");
    // Another organization counts its own.
    let other = app
        .post(
            "/v1/webhook-endpoints",
            &app.tokens.other_org,
            json!({"url": "http://127.0.0.1:9/other"}),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    let del = app
        .send(
            "DELETE",
            &format!("/v1/webhook-endpoints/{}", ids[0]),
            Some(t),
            None,
        )
        .await;
    assert_eq!(del.status, 204);
    let again = app
        .post(
            "/v1/webhook-endpoints",
            t,
            json!({"url": "http://127.0.0.1:9/again"}),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    let doc = app.get("/openapi.json", t).await.body;
    let conflict = &doc["paths"]["/v1/webhook-endpoints"]["post"]["responses"]["409"];
    assert!(
        conflict["description"]
            .as_str()
            .is_some_and(|d| d.contains("webhook_endpoint_limit")),
        "{conflict}"
    );
}

/// A receiver that never answers: it counts the requests it has started
/// and those whose connection the sender has since dropped.
async fn tar_pit() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (started, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, d) = (started.clone(), dropped.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (s, d) = (s.clone(), d.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                let _guard = Dropped(d);
                std::future::pending::<()>().await;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, started, dropped)
}

/// A tar-pit endpoint (it never answers) does not hold up another
/// endpoint's deliveries: the fast one gets a later event while the slow
/// one's first request is still hanging.
#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_the_others() {
    let app = spawn_app().await;
    let (slow_url, started, dropped) = tar_pit().await;
    let (fast_url, fast) = receiver(200).await;
    for url in [&slow_url, &fast_url] {
        let e = subscribe(&app, url).await;
        assert_eq!(e.status, 201, "{}", e.body);
    }
    pause_allocation(&app).await;
    wait_for(|| started.load(Ordering::SeqCst) >= 1 && fast.0.lock().unwrap().len() == 1).await;
    // A second event while the slow endpoint still hangs on the first.
    let a = app
        .patch(
            "/v1/capacity/allocations/ALLOC-26-000441",
            &app.tokens.org_write,
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Generous: the sender's own timeout would end the slow request at 10 s.
    for _ in 0..1500 {
        if fast.0.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fast.0.lock().unwrap().len(),
        2,
        "the fast endpoint's second event"
    );
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "the fast endpoint waited for the slow one to time out"
    );
}
