//! Client commands: the main reads and writes against a running server,
//! as tables for people or `--json` for scripts.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Clone)]
pub struct Connection {
    /// The server's base URL.
    #[arg(
        long,
        env = "CAPACITY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// A bearer token (`cap_…`).
    #[arg(long, env = "CAPACITY_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum PoolsCommand {
    /// List pools.
    List {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        resource_type: Option<String>,
    },
    /// Show one pool.
    Get { id: String },
}

#[derive(Subcommand)]
pub enum AllocationsCommand {
    /// List allocations.
    List {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        pool: Option<String>,
        /// Only those below this utilisation percent last week.
        #[arg(long)]
        utilisation_below: Option<String>,
    },
    /// Show one allocation.
    Get { id: String },
    /// Commit supply to a service line.
    Create {
        #[arg(long)]
        pool: String,
        #[arg(long)]
        service_line: String,
        /// Per the pool's period.
        #[arg(
            long,
            conflicts_with = "per_week",
            required_unless_present = "per_week"
        )]
        committed: Option<String>,
        #[arg(long)]
        per_week: Option<String>,
        #[arg(long)]
        starts_at: Option<String>,
        #[arg(long)]
        ends_at: Option<String>,
    },
    /// Change an allocation (commitment changes wait for the next billing period unless --now).
    Patch {
        id: String,
        #[arg(long, conflicts_with = "per_week")]
        committed: Option<String>,
        #[arg(long)]
        per_week: Option<String>,
        /// An RFC 3339 instant, or `none` to clear.
        #[arg(long)]
        ends_at: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Apply commitment changes now.
        #[arg(long)]
        now: bool,
    },
}

/// What a client invocation asks of the server.
pub enum ClientCommand {
    Pools {
        command: PoolsCommand,
    },
    Allocations {
        command: AllocationsCommand,
    },
    Demand {
        workspace: String,
        resource_type: String,
        period: String,
    },
    Events {
        kind: Option<String>,
    },
}

fn quantity(s: &str) -> Result<Value, String> {
    s.parse::<serde_json::Number>()
        .map(Value::Number)
        .map_err(|_| format!("{s:?} is not a number"))
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    let q = ser.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

pub async fn run(conn: Connection, command: ClientCommand) -> Result<(), String> {
    let token = conn
        .token
        .clone()
        .ok_or("a token is required: --token or CAPACITY_TOKEN")?;
    capacity_api::dispatcher::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = conn.url.trim_end_matches('/').to_owned();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (http, token, base) = (http.clone(), token.clone(), base.clone());
        async move {
            let mut req = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req
                .send()
                .await
                .map_err(|e| format!("cannot reach {base}: {e}"))?;
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!(
                    "{} {}: {}",
                    status.as_u16(),
                    body["code"].as_str().unwrap_or(""),
                    body["detail"].as_str().unwrap_or("")
                ))
            }
        }
    };
    use reqwest::Method;
    let (body, columns): (Value, &[&str]) = match command {
        ClientCommand::Pools {
            command:
                PoolsCommand::List {
                    workspace,
                    resource_type,
                },
        } => (
            call(
                Method::GET,
                format!(
                    "/v1/capacity{}",
                    query(&[
                        ("workspace_id", &workspace),
                        ("resource_type", &resource_type)
                    ])
                ),
                None,
            )
            .await?,
            &[
                "id",
                "workspace_id",
                "resource_type",
                "total",
                "allocated",
                "available",
                "unit",
                "period",
            ],
        ),
        ClientCommand::Pools {
            command: PoolsCommand::Get { id },
        } => (
            call(Method::GET, format!("/v1/capacity/{id}"), None).await?,
            &[
                "id",
                "workspace_id",
                "resource_type",
                "total",
                "allocated",
                "available",
                "unit",
                "period",
            ],
        ),
        ClientCommand::Allocations { command } => {
            let cols: &[&str] = &[
                "id",
                "capacity_pool_id",
                "service_line_id",
                "committed_per_week",
                "actual_last_week",
                "utilisation_percent",
                "status",
                "ends_at",
            ];
            let body = match command {
                AllocationsCommand::List {
                    workspace,
                    status,
                    pool,
                    utilisation_below,
                } => {
                    let q = query(&[
                        ("workspace_id", &workspace),
                        ("status", &status),
                        ("capacity_pool_id", &pool),
                        ("utilisation_below", &utilisation_below),
                    ]);
                    call(Method::GET, format!("/v1/capacity/allocations{q}"), None).await?
                }
                AllocationsCommand::Get { id } => {
                    call(Method::GET, format!("/v1/capacity/allocations/{id}"), None).await?
                }
                AllocationsCommand::Create {
                    pool,
                    service_line,
                    committed,
                    per_week,
                    starts_at,
                    ends_at,
                } => {
                    let mut b =
                        json!({ "capacity_pool_id": pool, "service_line_id": service_line });
                    if let Some(c) = committed {
                        b["committed"] = quantity(&c)?;
                    }
                    if let Some(c) = per_week {
                        b["committed_per_week"] = quantity(&c)?;
                    }
                    if let Some(s) = starts_at {
                        b["starts_at"] = json!(s);
                    }
                    if let Some(e) = ends_at {
                        b["ends_at"] = json!(e);
                    }
                    call(Method::POST, "/v1/capacity/allocations".into(), Some(b)).await?
                }
                AllocationsCommand::Patch {
                    id,
                    committed,
                    per_week,
                    ends_at,
                    status,
                    reason,
                    now,
                } => {
                    let mut b = json!({});
                    if let Some(c) = committed {
                        b["committed"] = quantity(&c)?;
                    }
                    if let Some(c) = per_week {
                        b["committed_per_week"] = quantity(&c)?;
                    }
                    if let Some(e) = ends_at {
                        b["ends_at"] = if e == "none" { Value::Null } else { json!(e) };
                    }
                    if let Some(s) = status {
                        b["status"] = json!(s);
                    }
                    if let Some(r) = reason {
                        b["reason"] = json!(r);
                    }
                    if now {
                        b["effective_immediately"] = json!(true);
                    }
                    call(
                        Method::PATCH,
                        format!("/v1/capacity/allocations/{id}"),
                        Some(b),
                    )
                    .await?
                }
            };
            (body, cols)
        }
        ClientCommand::Demand {
            workspace,
            resource_type,
            period,
        } => {
            let q = query(&[
                ("workspace_id", &Some(workspace)),
                ("resource_type", &Some(resource_type)),
                ("period", &Some(period)),
            ]);
            (
                call(Method::GET, format!("/v1/capacity/demand{q}"), None).await?,
                &[
                    "period",
                    "current_committed",
                    "pending_requests",
                    "available_supply",
                    "supply_gap",
                    "recommendation",
                ],
            )
        }
        ClientCommand::Events { kind } => (
            call(
                Method::GET,
                format!("/v1/events{}", query(&[("type", &kind)])),
                None,
            )
            .await?,
            &["id", "type", "created_at"],
        ),
    };
    if conn.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        print!("{}", table(&body["data"], columns));
    }
    Ok(())
}

/// A plain text table of `columns` for one object or a list of them.
pub fn table(data: &Value, columns: &[&str]) -> String {
    let rows: Vec<&Value> = match data {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let cell = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |items: Vec<String>| {
        items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
            + "\n"
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &json!([{"id": "CAP-1", "total": 200}, {"id": "CAP-22", "total": null}]),
            &["id", "total"],
        );
        assert_eq!(t, "ID      TOTAL\nCAP-1   200\nCAP-22  -\n");
    }
}
