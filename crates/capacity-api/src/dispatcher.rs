//! The webhook dispatcher: fans the events outbox out to endpoints, sends
//! each delivery signed per Standard Webhooks, and retries failures with
//! growing back-off for up to three days. Deliveries are claimed with a
//! lease in the store, so several server processes never send the same
//! delivery at once; a crash mid-send means the lease runs out and it is
//! sent again (at least once).

use crate::AppState;
use crate::webhooks::check_url;
use capacity_domain::webhook::{next_attempt, sign};
use capacity_store::{AttemptOutcome, DeliveryJob};
use std::time::Duration;

const BATCH: u32 = 32;
const LEASE_MICROS: i64 = 60_000_000;

/// Installs the TLS crypto provider (ring) once per process; any HTTP client
/// must be built after this.
pub fn install_crypto_provider() {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("capacity-api-webhooks/1")
        .build()
        .unwrap_or_default()
}

/// How often pools' running commitment totals are folded forward.
const FOLD_EVERY: Duration = Duration::from_secs(600);

/// Runs until the task is dropped: webhook deliveries, every ten minutes the
/// fold of pools' running commitment totals, and once a week the
/// low-utilisation evaluation (the store makes it happen once per week
/// across processes).
pub async fn run(state: AppState) {
    let client = client();
    let mut evaluated_week = None;
    let mut folded: Option<std::time::Instant> = None;
    loop {
        let week = state.clock.now().week_start();
        if evaluated_week != Some(week) {
            match state
                .store
                .evaluate_low_utilisation(
                    week,
                    state.settings.utilisation_low_tenths,
                    state.clock.now(),
                )
                .await
            {
                Ok(n) => {
                    evaluated_week = Some(week);
                    if let Some(n) = n {
                        tracing::info!(recorded = n, "weekly low-utilisation evaluation");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "low-utilisation evaluation failed; retrying"),
            }
        }
        if folded.is_none_or(|t| t.elapsed() >= FOLD_EVERY) {
            match state.store.fold_commitments(state.clock.now()).await {
                Ok(n) => {
                    folded = Some(std::time::Instant::now());
                    tracing::debug!(pools = n, "folded commitment totals");
                }
                Err(e) => tracing::warn!(error = %e, "folding commitment totals failed; retrying"),
            }
        }
        let sent = match tick(&state, &client).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatch failed; retrying");
                0
            }
        };
        if sent < BATCH as usize {
            tokio::time::sleep(state.settings.dispatch_interval).await;
        }
    }
}

/// One round: claim due deliveries and send them concurrently.
pub async fn tick(
    state: &AppState,
    client: &reqwest::Client,
) -> Result<usize, capacity_store::StoreError> {
    let now = state.clock.now();
    let jobs = state
        .store
        .claim_deliveries(now, BATCH, LEASE_MICROS)
        .await?;
    let n = jobs.len();
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let (state, client) = (state.clone(), client.clone());
        tasks.spawn(async move {
            let outcome = send(&state, &client, &job).await;
            if let Err(e) = state
                .store
                .record_attempt(job.delivery_seq, outcome, state.clock.now())
                .await
            {
                tracing::warn!(error = %e, "could not record a webhook attempt");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(n)
}

async fn send(state: &AppState, client: &reqwest::Client, job: &DeliveryJob) -> AttemptOutcome {
    let now = state.clock.now();
    let failed = |status_code: Option<u16>, error: String| AttemptOutcome {
        status_code,
        error: Some(error),
        delivered: false,
        next_retry_at: next_attempt(job.attempts + 1, job.event_created_at, now),
    };
    // Resolve again at send time: the address behind a name can change.
    if let Err(e) = check_url(&job.url, state.settings.allow_private_webhooks).await {
        return failed(None, format!("url {e}"));
    }
    let timestamp = now.micros().div_euclid(1_000_000);
    let Some(signature) = sign(
        &job.secret,
        &job.event_id,
        timestamp,
        job.payload.as_bytes(),
    ) else {
        return failed(None, "unusable signing secret".into());
    };
    let res = client
        .post(&job.url)
        .header("content-type", "application/json")
        .header("webhook-id", &job.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(job.payload.clone())
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => AttemptOutcome {
            status_code: Some(r.status().as_u16()),
            error: None,
            delivered: true,
            next_retry_at: None,
        },
        Ok(r) => failed(
            Some(r.status().as_u16()),
            format!("endpoint answered {}", r.status()),
        ),
        Err(e) => failed(None, format!("request failed: {e}")),
    }
}
