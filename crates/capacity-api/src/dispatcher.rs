//! The webhook dispatcher: fans the events outbox out to endpoints, sends
//! each delivery signed per Standard Webhooks, and retries failures with
//! growing back-off for up to three days. Deliveries are claimed with a
//! lease in the store, so several server processes never send the same
//! delivery at once; a crash mid-send means the lease runs out and it is
//! sent again (at least once).
//!
//! Each delivery is sent on its own task, with one timeout for the whole
//! request, at most [`MAX_IN_FLIGHT`] at once per process and (by the
//! store's claim) `MAX_LEASED_PER_ENDPOINT` per endpoint; a round never
//! waits for a send, so a slow endpoint holds up only its own deliveries.
//! Hosts are resolved once per connection by [`PinnedResolver`], which
//! checks every address and is the only source of addresses the client
//! connects to (SSRF, DNS rebinding).

use crate::AppState;
use capacity_domain::webhook::is_private;
use capacity_domain::webhook::{next_attempt, sign};
use capacity_store::{AttemptOutcome, DeliveryJob};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Deliveries claimed at most per round.
const BATCH: u32 = 32;
/// Deliveries being sent at once by this process, over all endpoints (the
/// store caps each endpoint at `MAX_LEASED_PER_ENDPOINT` across processes).
pub const MAX_IN_FLIGHT: usize = 64;
/// A lease outlives any send (the request timeout is 10 s): a delivery is
/// sent again only if its process died mid-send.
const LEASE_MICROS: i64 = 60_000_000;

/// Installs the TLS crypto provider (ring) once per process; any HTTP client
/// must be built after this.
pub fn install_crypto_provider() {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How webhook hosts are resolved, and which addresses a webhook may not
/// reach (unless private webhooks are allowed). Tests replace the resolver.
#[derive(Clone)]
pub struct WebhookNet {
    pub resolver: Arc<dyn Resolve>,
    pub refused: fn(IpAddr) -> bool,
    /// How long one delivery may take, connection to answer.
    pub request_timeout: Duration,
}

impl Default for WebhookNet {
    fn default() -> WebhookNet {
        WebhookNet {
            resolver: Arc::new(SystemResolver),
            refused: is_private,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for WebhookNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNet").finish_non_exhaustive()
    }
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Resolves a webhook host once, checks every address it answers, and
/// hands the HTTP client only those: the client connects to exactly the
/// addresses that were checked (no second lookup a rebinding name could
/// answer differently).
struct PinnedResolver {
    net: WebhookNet,
    allow_private: bool,
}

/// Why a host was not connected to; found again in the client's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    DnsFailed,
    AddressNotAllowed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::DnsFailed => "the host does not resolve",
            Refusal::AddressNotAllowed => "the host resolves to an address not allowed",
        })
    }
}

impl std::error::Error for Refusal {}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.net.resolver.resolve(name);
        let (refused, allow_private) = (self.net.refused, self.allow_private);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "webhook host lookup failed");
                    return Err(Refusal::DnsFailed.into());
                }
            };
            if addrs.is_empty() {
                return Err(Refusal::DnsFailed.into());
            }
            if !allow_private && addrs.iter().any(|a| refused(a.ip())) {
                return Err(Refusal::AddressNotAllowed.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The webhook HTTP client: hosts resolved through [`PinnedResolver`], no
/// proxy (a proxy would resolve the host itself), no redirects, one timeout
/// for the whole request.
pub fn client(net: &WebhookNet, allow_private: bool) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PinnedResolver {
            net: net.clone(),
            allow_private,
        }))
        .no_proxy()
        .connect_timeout(net.request_timeout.min(Duration::from_secs(5)))
        .timeout(net.request_timeout)
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
    let client = client(
        &state.settings.webhook_net,
        state.settings.allow_private_webhooks,
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    // Dropping the set (the task is aborted at shutdown) cancels the sends
    // in flight; their leases lapse and they are sent again later.
    let mut sending = tokio::task::JoinSet::new();
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
        while sending.try_join_next().is_some() {}
        let claimed = match dispatch(&state, &client, &slots, &mut sending).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatch failed; retrying");
                0
            }
        };
        if claimed < BATCH as usize {
            tokio::time::sleep(state.settings.dispatch_interval).await;
        }
    }
}

/// One round: claims as many due deliveries as there are free sending
/// slots (at most [`BATCH`]) and starts each on its own task, which holds
/// its slot until the attempt is recorded. Returns without waiting for any
/// send: a slow endpoint holds its own slots (at most
/// `MAX_LEASED_PER_ENDPOINT`, by the store's claim), never the round.
pub async fn dispatch(
    state: &AppState,
    client: &reqwest::Client,
    slots: &Arc<tokio::sync::Semaphore>,
    sending: &mut tokio::task::JoinSet<()>,
) -> Result<usize, capacity_store::StoreError> {
    let free = slots.available_permits().min(BATCH as usize);
    if free == 0 {
        return Ok(0);
    }
    let now = state.clock.now();
    let jobs = state
        .store
        .claim_deliveries(now, free as u32, LEASE_MICROS)
        .await?;
    let n = jobs.len();
    for job in jobs {
        // Only this loop takes slots, and it took no more than were free.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        let (state, client) = (state.clone(), client.clone());
        sending.spawn(async move {
            let _slot = slot;
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
    Ok(n)
}

/// What went wrong with an attempt, as the delivery log shows it: a class,
/// never the socket error's text (which would tell a tenant what answers
/// where inside the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    ConnectFailed,
    DnsFailed,
    AddressNotAllowed,
    TlsFailed,
    HttpStatus,
    InvalidSecret,
    RequestFailed,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::ConnectFailed => "connect_failed",
            Failure::DnsFailed => "dns_failed",
            Failure::AddressNotAllowed => "address_not_allowed",
            Failure::TlsFailed => "tls_failed",
            Failure::HttpStatus => "http_status",
            Failure::InvalidSecret => "invalid_secret",
            Failure::RequestFailed => "request_failed",
        }
    }

    /// The class of a client error, from the causes it wraps.
    fn of(e: &reqwest::Error) -> Failure {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut tls = false;
        while let Some(c) = cause {
            if let Some(r) = c.downcast_ref::<Refusal>() {
                return match r {
                    Refusal::DnsFailed => Failure::DnsFailed,
                    Refusal::AddressNotAllowed => Failure::AddressNotAllowed,
                };
            }
            tls |= c.is::<rustls::Error>();
            // An io::Error's `source` skips the error it wraps: step into it.
            cause = match c
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => c.source(),
            };
        }
        if e.is_timeout() {
            Failure::Timeout
        } else if tls {
            Failure::TlsFailed
        } else if e.is_connect() {
            Failure::ConnectFailed
        } else {
            Failure::RequestFailed
        }
    }
}

/// Sends one delivery. The host is resolved once, by the client's
/// [`PinnedResolver`]; an address written in the URL is checked here (the
/// client does not resolve those).
async fn send(state: &AppState, client: &reqwest::Client, job: &DeliveryJob) -> AttemptOutcome {
    let now = state.clock.now();
    let failed = |status_code: Option<u16>, failure: Failure| AttemptOutcome {
        status_code,
        error: Some(failure.as_str().to_owned()),
        delivered: false,
        next_retry_at: next_attempt(job.attempts + 1, job.event_created_at, now),
    };
    let literal = match url::Url::parse(&job.url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return failed(None, Failure::RequestFailed),
    };
    let net = &state.settings.webhook_net;
    if literal.is_some_and(|ip| !state.settings.allow_private_webhooks && (net.refused)(ip)) {
        return failed(None, Failure::AddressNotAllowed);
    }
    let timestamp = now.micros().div_euclid(1_000_000);
    let Some(signature) = sign(
        &job.secret,
        &job.event_id,
        timestamp,
        job.payload.as_bytes(),
    ) else {
        return failed(None, Failure::InvalidSecret);
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
        Ok(r) => failed(Some(r.status().as_u16()), Failure::HttpStatus),
        Err(e) => {
            let failure = Failure::of(&e);
            // The raw error is for the operator's log, not the tenant's.
            tracing::debug!(delivery = job.delivery_seq, class = failure.as_str(), error = %e, "webhook attempt failed");
            failed(None, failure)
        }
    }
}
