//! The seed dataset (SPEC §9), laid out relative to the clock and written
//! through the same store calls the API makes. With the clock pinned at
//! 2026-04-15T06:00:00Z it reproduces `reference-examples.md` to the field.

use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::Resource;
use capacity_domain::time::{MICROS_PER_DAY, MICROS_PER_WEEK};
use capacity_domain::{
    AllocationId, Instant, OrgId, PoolId, Quantity, ResourceType, ServiceLineId, WorkspaceId,
};
use capacity_store::{
    Access, CommitmentInput, NewAllocation, NewDemandRequest, NewPool, Principal, Result, Store,
    Tenant, UsageRecord,
};

pub const ORGANIZATION: &str = "ORG-26-090500";
pub const WORKSPACE: &str = "WS-26-000021";

fn q(s: &str) -> Quantity {
    Quantity::parse(s).expect("demo quantities are valid")
}

fn talent(id: &str, role: &str, hours: &str) -> Resource {
    Resource {
        kind: "talent".into(),
        id: id.into(),
        role: Some(role.into()),
        committed_hours_per_week: Some(q(hours)),
    }
}

/// Midnight UTC `days` before `now`.
fn days_ago(now: Instant, days: i64) -> Instant {
    let t = now.plus_micros(-days * MICROS_PER_DAY);
    Instant::from_micros(t.micros() - t.micros().rem_euclid(MICROS_PER_DAY))
}

struct Seed {
    seq: i64,
    pool: &'static str,
    line: &'static str,
    committed: &'static str,
    resources: Vec<Resource>,
    started_days_ago: i64,
    /// Usage per complete week, newest first (last week first).
    weekly_usage: &'static [&'static str],
}

/// Loads the dataset into an empty store. Returns `false` if the store
/// already holds data (nothing is changed then).
pub async fn load(store: &dyn Store, now: Instant) -> Result<bool> {
    if !store.is_empty().await? {
        return Ok(false);
    }
    let scope = Principal {
        token_id: "demo".into(),
        tenant: Tenant::Platform,
        access: Access::Write,
    };
    let org = OrgId::parse(ORGANIZATION).expect("valid");
    let ws = WorkspaceId::parse(WORKSPACE).expect("valid");
    for (seq, rt, total) in [
        (112, ResourceType::TalentHours, "200"),
        (198, ResourceType::AgentCredits, "100000"),
    ] {
        store.reserve_ids_from(MintedPrefix::Pool, seq).await?;
        let new = NewPool {
            workspace_id: ws.clone(),
            organization_id: org.clone(),
            resource_type: rt,
            period: rt.default_period(),
            total: q(total),
            overcommit_ratio: 1000,
            unit_price: Some(capacity_domain::model::UnitPrice {
                amount: if rt == ResourceType::TalentHours {
                    "85.00"
                } else {
                    "0.002"
                }
                .into(),
                currency: "USD".into(),
            }),
        };
        store.create_pool(&scope, new, now).await?;
    }
    let seeds = [
        Seed {
            seq: 441,
            pool: "CAP-26-000112",
            line: "LIN-26-084729",
            committed: "40",
            resources: vec![talent("SCR-128491", "senior_backend_engineer", "40")],
            started_days_ago: 90,
            weekly_usage: &[
                "38.5", "40", "39", "37.5", "40", "38", "36", "40", "39.5", "38", "40", "32",
            ],
        },
        Seed {
            seq: 442,
            pool: "CAP-26-000112",
            line: "LIN-26-084730",
            committed: "60",
            resources: vec![
                talent("SCR-128492", "frontend_engineer", "30"),
                talent("SCR-128493", "product_designer", "30"),
            ],
            started_days_ago: 60,
            weekly_usage: &["55", "57.5", "58", "52", "60", "56", "54", "59"],
        },
        Seed {
            seq: 443,
            pool: "CAP-26-000112",
            line: "LIN-26-084731",
            committed: "60",
            resources: vec![
                talent("SCR-128494", "data_engineer", "40"),
                talent("SCR-128495", "qa_engineer", "20"),
            ],
            started_days_ago: 45,
            weekly_usage: &["33", "35.25", "30", "38", "36", "31"],
        },
        Seed {
            seq: 444,
            pool: "CAP-26-000198",
            line: "LIN-26-084732",
            committed: "45000",
            resources: vec![Resource {
                kind: "agent".into(),
                id: "AGT-26-000017".into(),
                role: Some("support_agent".into()),
                committed_hours_per_week: None,
            }],
            started_days_ago: 75,
            weekly_usage: &[
                "9800", "10150", "9420.5", "10020", "9900", "8800", "9100", "9650", "10000", "9300",
            ],
        },
    ];
    let mut records = Vec::new();
    for s in seeds {
        store
            .reserve_ids_from(MintedPrefix::Allocation, s.seq)
            .await?;
        let starts_at = days_ago(now, s.started_days_ago);
        let alloc = store
            .create_allocation(
                &scope,
                NewAllocation {
                    capacity_pool_id: PoolId::parse(s.pool).expect("valid"),
                    service_line_id: ServiceLineId::parse(s.line).expect("valid"),
                    committed: CommitmentInput::PerPeriod(q(s.committed)),
                    resources: s.resources,
                    starts_at: Some(starts_at),
                    ends_at: None,
                },
                now,
            )
            .await?;
        records.extend(weekly_records(&alloc.id, now, starts_at, s.weekly_usage));
    }
    for chunk in records.chunks(1000) {
        store.record_usage(&scope, chunk.to_vec(), now).await?;
    }
    // Pending talent demand of 80 hours a week over the next quarter.
    let quarter = now.next_quarter_start();
    store
        .create_request(
            &scope,
            NewDemandRequest {
                workspace_id: ws.clone(),
                organization_id: None,
                resource_type: ResourceType::TalentHours,
                quantity: CommitmentInput::PerWeek(q("80")),
                starts_at: quarter,
                ends_at: Some(quarter.next_quarter_start()),
                note: Some("Two senior engineers for the platform migration".into()),
            },
            now,
        )
        .await?;
    Ok(true)
}

/// Each week's usage split over its five working days (the remainder on
/// Friday, so weekly sums are exact), newest week first.
fn weekly_records(
    alloc: &AllocationId,
    now: Instant,
    starts_at: Instant,
    weekly: &[&str],
) -> Vec<UsageRecord> {
    let this_week = now.week_start();
    let mut out = Vec::new();
    for (i, total) in weekly.iter().enumerate() {
        let week = this_week.plus_micros(-(i as i64 + 1) * MICROS_PER_WEEK);
        let total = q(total).thousandths();
        let per_day = total / 5;
        for day in 0..5 {
            let at = week.plus_micros(day * MICROS_PER_DAY + 17 * 3_600_000_000);
            if at < starts_at {
                continue;
            }
            let amount = if day == 4 {
                total - per_day * 4
            } else {
                per_day
            };
            out.push(UsageRecord {
                id: format!("demo-{alloc}-{}", at.micros()),
                allocation_id: alloc.clone(),
                quantity: Quantity::from_thousandths(amount),
                occurred_at: at,
            });
        }
    }
    out
}
