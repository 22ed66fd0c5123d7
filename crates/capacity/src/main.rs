//! `capacity`: the server and its command line (SPEC §8).
//!
//! Every flag is also an environment variable (`CAPACITY_LISTEN`,
//! `CAPACITY_DATABASE_URL`, …) and a key of the optional TOML file
//! ([`config`]); `CAPACITY_NOW` pins the clock.
#![forbid(unsafe_code)]

mod client;
mod config;
mod jsonlog;
mod logsink;
mod store;

/// mimalloc rather than the system allocator: a request makes a few hundred
/// small, short-lived allocations (headers, JSON, SQL rows), and glibc's
/// malloc/free were ~9 % of a read's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capacity_api::auth::{generate_secret, hash_secret};
use capacity_api::{AppState, Clock};
use capacity_domain::{Instant, OrgId, WorkspaceId};
use capacity_store::{Access, NewToken, TokenKind};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "capacity",
    version,
    about = "The Capacity API: pools, allocations, utilisation and demand"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A TOML configuration file (see the README); flags and environment
    /// variables win over it.
    #[arg(long = "config", global = true, env = "CAPACITY_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Log format: `pretty` for people, `json` for machines [default: pretty].
    #[arg(long, global = true, env = "CAPACITY_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Args, Clone)]
struct Db {
    /// `sqlite://path` or `postgres://…` [default: sqlite://capacity.db].
    /// Its value is never shown in help or logs (it may hold a password).
    #[arg(long, env = "CAPACITY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl Db {
    fn url(&self, file: &config::FileConfig) -> String {
        config::pick(
            self.database_url.clone(),
            file.database_url.clone(),
            config::DEFAULT_DATABASE_URL.to_owned(),
        )
    }
}

/// A boolean flag that is also an environment variable and a file key:
/// `--flag`, `--flag=false`, `CAPACITY_FLAG=1`.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "CAPACITY_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        db: Db,
        /// Load the seed dataset into an empty database and print a platform token.
        #[arg(long, env = "CAPACITY_DEMO", num_args = 0..=1, default_missing_value = "true", value_parser = boolish())]
        demo: Option<bool>,
        /// Let webhook URLs point at private or loopback addresses (off: SSRF protection).
        #[arg(long, env = "CAPACITY_ALLOW_PRIVATE_WEBHOOKS", num_args = 0..=1, default_missing_value = "true", value_parser = boolish())]
        allow_private_webhooks: Option<bool>,
        /// Deliver webhooks [default: true]; `false` records deliveries but sends nothing.
        #[arg(long, env = "CAPACITY_WEBHOOK_DELIVERY", num_args = 0..=1, default_missing_value = "true", value_parser = boolish())]
        webhook_delivery: Option<bool>,
        /// Sustained requests per second allowed per token; 0 = no limit [default: 0].
        #[arg(long, env = "CAPACITY_RATE_LIMIT_PER_SECOND")]
        rate_limit_per_second: Option<u32>,
        /// Requests a token may send at once above that rate [default: 100].
        #[arg(long, env = "CAPACITY_RATE_LIMIT_BURST")]
        rate_limit_burst: Option<u32>,
        /// Seconds before a request is answered 503 `timeout` [default: 30].
        #[arg(long, env = "CAPACITY_REQUEST_TIMEOUT_SECONDS")]
        request_timeout_seconds: Option<u64>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: Db,
    },
    /// Load the seed dataset (SPEC §9) into an empty database.
    Demo {
        #[command(flatten)]
        db: Db,
    },
    /// Client: pools on a running server.
    Pools {
        #[command(subcommand)]
        command: client::PoolsCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Client: allocations on a running server.
    Allocations {
        #[command(subcommand)]
        command: client::AllocationsCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Client: a demand forecast from a running server.
    Forecast {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        resource_type: String,
        /// `2026-Q3`, `2026-07` or `2026-W27`.
        #[arg(long)]
        period: String,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Client: recent events from a running server.
    Events {
        #[arg(long = "type")]
        kind: Option<String>,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Manage API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Mint a token; the secret is printed once, alone on the last line.
    Create {
        /// A platform token: every organization, and the platform operations.
        #[arg(
            long,
            conflicts_with = "organization",
            required_unless_present = "organization"
        )]
        platform: bool,
        /// An organization token for this `ORG-…`.
        #[arg(long)]
        organization: Option<String>,
        /// Narrow an organization token to these workspaces (repeatable).
        #[arg(long = "workspace", requires = "organization")]
        workspaces: Vec<String>,
        #[arg(long, value_parser = ["read", "write"], default_value = "read")]
        scope: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

fn clock() -> Result<Clock, String> {
    match std::env::var("CAPACITY_NOW") {
        Ok(v) if !v.is_empty() => Instant::parse(&v)
            .map(Clock::pinned)
            .map_err(|e| format!("CAPACITY_NOW {e}")),
        _ => Ok(Clock::system()),
    }
}

/// Logs go to standard error: one structured line per request (see
/// `capacity-api`'s middleware), filtered by `RUST_LOG` (default `info`).
///
/// Lines are formatted on the request's thread and written by a logging
/// thread in batches ([`logsink`]). The returned guard writes out what is
/// buffered when dropped, so `main` holds it until it returns.
fn init_logs(format: LogFormat) -> logsink::Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = logsink::start();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.event_format(jsonlog::JsonLine).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
    guard
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match config::FileConfig::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file_format = match file.log_format.as_deref().map(|f| {
        <LogFormat as clap::ValueEnum>::from_str(f, true).map_err(|_| {
            format!("log_format in the configuration file must be pretty or json, not {f:?}")
        })
    }) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(f)) => Some(f),
        None => None,
    };
    let _logs = init_logs(config::pick(cli.log_format, file_format, LogFormat::Pretty));
    match run(cli.command, file).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, file: config::FileConfig) -> Result<(), String> {
    let clock = clock()?;
    match command {
        Command::Pools { command, conn } => {
            client::run(conn, client::ClientCommand::Pools { command }).await
        }
        Command::Allocations { command, conn } => {
            client::run(conn, client::ClientCommand::Allocations { command }).await
        }
        Command::Forecast {
            workspace,
            resource_type,
            period,
            conn,
        } => {
            client::run(
                conn,
                client::ClientCommand::Demand {
                    workspace,
                    resource_type,
                    period,
                },
            )
            .await
        }
        Command::Events { kind, conn } => {
            client::run(conn, client::ClientCommand::Events { kind }).await
        }
        Command::Serve {
            listen,
            db,
            demo,
            allow_private_webhooks,
            webhook_delivery,
            rate_limit_per_second,
            rate_limit_burst,
            request_timeout_seconds,
        } => {
            let listen = config::pick(
                listen,
                file.listen.clone(),
                config::DEFAULT_LISTEN.to_owned(),
            );
            let demo = config::pick(demo, file.demo, false);
            let allow_private_webhooks =
                config::pick(allow_private_webhooks, file.allow_private_webhooks, false);
            let deliver_webhooks = config::pick(webhook_delivery, file.webhook_delivery, true);
            let limits = capacity_api::Limits {
                rate_limit_per_second: std::num::NonZeroU32::new(config::pick(
                    rate_limit_per_second,
                    file.rate_limit_per_second,
                    0,
                )),
                rate_limit_burst: std::num::NonZeroU32::new(config::pick(
                    rate_limit_burst,
                    file.rate_limit_burst,
                    config::DEFAULT_RATE_LIMIT_BURST,
                ))
                .ok_or("rate_limit_burst must be at least 1")?,
                request_timeout: std::time::Duration::from_secs(config::pick(
                    request_timeout_seconds,
                    file.request_timeout_seconds,
                    config::DEFAULT_REQUEST_TIMEOUT_SECONDS,
                )),
                ..capacity_api::Limits::default()
            };
            if limits.request_timeout.is_zero() {
                return Err("request_timeout_seconds must be at least 1".into());
            }
            let store = store::open(&db.url(&file)).await?;
            if demo {
                if capacity_api::demo::load(store.as_ref(), clock.now())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    eprintln!("loaded the demo dataset");
                }
                let secret = mint(
                    store.as_ref(),
                    &clock,
                    TokenKind::Platform,
                    None,
                    vec![],
                    Access::Write,
                )
                .await?;
                println!("Demo platform token (write scope), shown once:\n{secret}");
                println!(
                    "Try:\n  curl -H 'Authorization: Bearer {secret}' 'http://{listen}/v1/capacity?workspace_id={}'",
                    capacity_api::demo::WORKSPACE
                );
            }
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!(
                %listen,
                rate_limit_per_second = limits.rate_limit_per_second.map_or(0, |r| r.get()),
                request_timeout_s = limits.request_timeout.as_secs(),
                deliver_webhooks,
                "serving"
            );
            let mut state = AppState::new(store, clock);
            state.settings = std::sync::Arc::new(capacity_api::Settings {
                allow_private_webhooks,
                deliver_webhooks,
                ..capacity_api::Settings::default()
            });
            capacity_api::serve_with(listener, state, limits, shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate { db } => {
            store::open(&db.url(&file)).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Demo { db } => {
            let store = store::open(&db.url(&file)).await?;
            if capacity_api::demo::load(store.as_ref(), clock.now())
                .await
                .map_err(|e| e.to_string())?
            {
                println!("loaded the demo dataset");
            } else {
                println!("the database already holds data; the demo dataset was not loaded");
            }
            Ok(())
        }
        Command::Tokens { command, db } => {
            let store = store::open(&db.url(&file)).await?;
            match command {
                TokensCommand::Create {
                    platform,
                    organization,
                    workspaces,
                    scope,
                } => {
                    let access = Access::parse(&scope).unwrap_or(Access::Read);
                    let (kind, org) = if platform {
                        (TokenKind::Platform, None)
                    } else {
                        let org = organization.unwrap_or_default();
                        (
                            TokenKind::Organization,
                            Some(OrgId::parse(&org).map_err(|e| format!("--organization {e}"))?),
                        )
                    };
                    let workspaces = workspaces
                        .iter()
                        .map(|w| WorkspaceId::parse(w).map_err(|e| format!("--workspace {e}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    let secret =
                        mint(store.as_ref(), &clock, kind, org, workspaces, access).await?;
                    println!("{secret}");
                    Ok(())
                }
                TokensCommand::List => {
                    let tokens = store.list_tokens().await.map_err(|e| e.to_string())?;
                    println!(
                        "{:<16} {:<13} {:<15} {:<6} {:<22} {:<22} workspaces",
                        "ID", "KIND", "ORGANIZATION", "SCOPE", "CREATED", "REVOKED"
                    );
                    for t in tokens {
                        println!(
                            "{:<16} {:<13} {:<15} {:<6} {:<22} {:<22} {}",
                            t.id,
                            t.kind.as_str(),
                            t.organization_id.as_ref().map_or("-", |o| o.as_str()),
                            t.access.as_str(),
                            t.created_at.to_string(),
                            t.revoked_at.map_or("-".to_owned(), |r| r.to_string()),
                            t.workspaces
                                .iter()
                                .map(|w| w.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        );
                    }
                    Ok(())
                }
                TokensCommand::Revoke { id } => {
                    if store
                        .revoke_token(&id, clock.now())
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        println!("revoked {id}");
                        Ok(())
                    } else {
                        Err(format!("no live token {id}"))
                    }
                }
            }
        }
    }
}

async fn mint(
    store: &dyn capacity_store::Store,
    clock: &Clock,
    kind: TokenKind,
    organization_id: Option<OrgId>,
    workspaces: Vec<WorkspaceId>,
    access: Access,
) -> Result<String, String> {
    let secret = generate_secret();
    let new = NewToken {
        kind,
        organization_id,
        workspaces,
        access,
        hash: hash_secret(&secret),
    };
    let rec = store
        .create_token(new, clock.now())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "created token {} ({} {})",
        rec.id,
        rec.kind.as_str(),
        rec.access.as_str()
    );
    Ok(secret)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down; finishing in-flight requests");
}
