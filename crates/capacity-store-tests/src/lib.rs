//! The one conformance suite of the storage contract.
//!
//! Each rule of `capacity_store::Store` is one `async fn` taking a fresh,
//! empty store (`Arc<dyn Store>`), named after the rule it proves, in a
//! module per subject: [`pools`], [`adjustments`], [`allocations`],
//! [`invariant`], [`lifecycle`], [`service_lines`], [`idempotency`],
//! [`tenancy`], [`pagination`], [`usage`], [`utilisation`], [`demand`],
//! [`events`], [`webhooks`], [`tokens`], [`concurrency`].
//!
//! Backends do not list the rules themselves: their test files call
//! [`conformance_tests!`] with a function that opens a fresh store, and get
//! one `#[tokio::test]` per rule (`tests/every_rule_runs.rs` fails when a
//! rule is left off the list), so a rule added here runs on every backend
//! (`tests/sqlite.rs` always, `tests/postgres.rs` when
//! `CAPACITY_TEST_POSTGRES_URL` is set).
//!
//! Rules call the store the way the API does, with the clock passed in:
//! [`NOW`] is the pinned instant of every rule.
#![forbid(unsafe_code)]

pub mod adjustments;
pub mod allocations;
pub mod concurrency;
pub mod demand;
pub mod events;
pub mod idempotency;
pub mod invariant;
pub mod lifecycle;
pub mod ownership;
pub mod pagination;
pub mod pools;
pub mod service_lines;
pub mod tenancy;
pub mod tokens;
pub mod usage;
pub mod utilisation;
pub mod webhooks;

use capacity_domain::model::{Allocation, Pool, Resource};
use capacity_domain::time::MICROS_PER_DAY;
use capacity_domain::{
    AllocationId, Instant, OrgId, PoolId, Quantity, ResourceType, ServiceLineId, WorkspaceId,
};
use capacity_store::{
    Access, CommitmentInput, NewAllocation, NewPool, PageRequest, Principal, Scope, Store,
    StoreError, Tenant,
};

/// The instant every rule runs at (a Wednesday; the last complete ISO week
/// is 2026-04-06 to 2026-04-13).
pub const NOW: &str = "2026-04-15T06:00:00Z";
pub const ORG_A: &str = "ORG-26-000001";
pub const WS_A: &str = "WS-26-000001";
pub const ORG_B: &str = "ORG-26-000002";
pub const WS_B: &str = "WS-26-000002";

/// Generates one `#[tokio::test]` per rule. `$fresh` is an
/// `async fn(&'static str) -> Option<(Arc<dyn Store>, Guard)>`: the test's
/// name in, a fresh store and whatever must live as long as the test out
/// (a temporary folder, a throw-away database), or `None` to skip.
///
/// Tests run on a multi-threaded runtime so the concurrency rules really
/// run in parallel.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        // Every rule, once. Add a rule here and every backend runs it.
        $crate::conformance_test!($fresh, pools::a_pool_starts_with_its_opening_supply);
        $crate::conformance_test!($fresh, pools::a_workspace_holds_one_pool_per_resource_type);
        $crate::conformance_test!($fresh, pools::a_workspace_belongs_to_one_organization);
        $crate::conformance_test!($fresh, pools::a_scope_creates_pools_only_in_its_tenant);
        $crate::conformance_test!($fresh, pools::minted_ids_follow_reserved_sequences);
        $crate::conformance_test!($fresh, pools::pool_filters_select_what_they_name);
        $crate::conformance_test!($fresh, pools::commitment_reads_do_not_depend_on_folding);
        $crate::conformance_test!(
            $fresh,
            adjustments::supply_changes_apply_now_or_when_scheduled
        );
        $crate::conformance_test!($fresh, adjustments::adjustments_cannot_be_backdated);
        $crate::conformance_test!($fresh, adjustments::supply_may_not_go_negative);
        $crate::conformance_test!(
            $fresh,
            adjustments::a_supply_cut_below_commitments_is_accepted_and_announced
        );
        $crate::conformance_test!($fresh, allocations::an_allocation_commits_supply);
        $crate::conformance_test!(
            $fresh,
            allocations::weekly_commitments_convert_to_the_pool_period
        );
        $crate::conformance_test!(
            $fresh,
            allocations::an_allocation_must_end_in_the_future_after_it_starts
        );
        $crate::conformance_test!($fresh, allocations::a_service_line_belongs_to_one_workspace);
        $crate::conformance_test!(
            $fresh,
            allocations::allocation_filters_select_what_they_name
        );
        $crate::conformance_test!(
            $fresh,
            invariant::a_create_beyond_available_is_refused_naming_the_first_violation
        );
        $crate::conformance_test!($fresh, invariant::every_future_instant_is_judged);
        $crate::conformance_test!($fresh, invariant::the_past_is_not_judged);
        $crate::conformance_test!($fresh, invariant::the_overcommit_ratio_scales_capacity);
        $crate::conformance_test!($fresh, tenancy::another_organization_sees_nothing);
        $crate::conformance_test!(
            $fresh,
            ownership::demand_names_only_the_callers_registered_workspaces
        );
        $crate::conformance_test!($fresh, ownership::service_lines_are_the_platforms);
        $crate::conformance_test!($fresh, ownership::pending_demand_stays_an_exact_sum);
        $crate::conformance_test!(
            $fresh,
            ownership::a_workspace_is_registered_once_by_the_platform
        );
        $crate::conformance_test!(
            $fresh,
            tenancy::a_workspace_narrowed_scope_sees_only_its_workspaces
        );
        $crate::conformance_test!($fresh, pagination::pools_page_in_creation_order);
        $crate::conformance_test!(
            $fresh,
            pagination::allocations_events_and_adjustments_page_without_gaps
        );
        $crate::conformance_test!($fresh, usage::a_record_id_counts_once);
        $crate::conformance_test!($fresh, usage::each_record_is_judged_on_its_own);
        $crate::conformance_test!($fresh, usage::weekly_usage_stays_an_exact_sum);
        $crate::conformance_test!(
            $fresh,
            usage::actual_last_week_sums_the_last_complete_iso_week
        );
        $crate::conformance_test!($fresh, events::every_write_announces_itself);
        $crate::conformance_test!($fresh, events::events_filter_by_type_and_time);
        $crate::conformance_test!($fresh, tokens::tokens_authenticate_until_revoked);
        $crate::conformance_test!($fresh, concurrency::concurrent_creates_never_overcommit);
        $crate::conformance_test!($fresh, concurrency::concurrent_pool_creation_makes_one_pool);
        $crate::conformance_test!(
            $fresh,
            concurrency::concurrent_reads_see_only_their_own_tenant
        );
        $crate::conformance_test!(
            $fresh,
            concurrency::concurrent_creates_may_share_a_new_service_line
        );
        $crate::conformance_test!(
            $fresh,
            concurrency::a_record_id_sent_concurrently_counts_once
        );
        $crate::conformance_test!(
            $fresh,
            concurrency::supply_cuts_racing_creates_keep_the_invariant
        );
        $crate::conformance_test!(
            $fresh,
            concurrency::concurrent_patch_increases_never_overcommit
        );
        $crate::conformance_test!(
            $fresh,
            concurrency::a_line_closed_while_allocations_are_made_for_it_orphans_every_one
        );
        $crate::conformance_test!(
            $fresh,
            concurrency::concurrent_usage_batches_roll_up_exactly
        );
        $crate::conformance_test!(
            $fresh,
            lifecycle::a_patch_schedules_commitment_changes_for_the_next_billing_period
        );
        $crate::conformance_test!(
            $fresh,
            lifecycle::an_increase_is_judged_against_supply_from_its_effective_time
        );
        $crate::conformance_test!(
            $fresh,
            lifecycle::if_match_names_the_version_a_patch_applies_to
        );
        $crate::conformance_test!(
            $fresh,
            lifecycle::closed_is_final_and_releases_the_commitment
        );
        $crate::conformance_test!($fresh, lifecycle::history_records_every_change);
        $crate::conformance_test!(
            $fresh,
            lifecycle::reducing_below_last_weeks_actual_warns_in_the_same_write
        );
        $crate::conformance_test!(
            $fresh,
            service_lines::closing_a_service_line_orphans_its_open_allocations
        );
        $crate::conformance_test!($fresh, service_lines::close_allocations_closes_them_instead);
        $crate::conformance_test!(
            $fresh,
            service_lines::a_service_line_signal_is_checked_against_its_workspace
        );
        $crate::conformance_test!(
            $fresh,
            idempotency::an_idempotency_key_replays_its_first_answer
        );
        $crate::conformance_test!(
            $fresh,
            idempotency::concurrent_requests_with_one_key_reserve_it_once
        );
        $crate::conformance_test!(
            $fresh,
            idempotency::expired_keys_and_abandoned_reservations_are_purged
        );
        $crate::conformance_test!($fresh, utilisation::usage_rolls_up_by_week_across_batches);
        $crate::conformance_test!(
            $fresh,
            utilisation::the_series_judges_each_week_by_the_commitment_then_in_force
        );
        $crate::conformance_test!(
            $fresh,
            utilisation::monthly_commitments_are_judged_exactly_per_week
        );
        $crate::conformance_test!(
            $fresh,
            utilisation::low_utilisation_is_evaluated_once_per_week
        );
        $crate::conformance_test!(
            $fresh,
            utilisation::concurrent_evaluations_of_one_week_record_once
        );
        $crate::conformance_test!(
            $fresh,
            utilisation::a_utilisation_filter_few_meet_answers_in_bounded_pages
        );
        $crate::conformance_test!($fresh, demand::requests_are_created_updated_and_listed);
        $crate::conformance_test!(
            $fresh,
            demand::forecast_data_reads_the_timelines_of_the_period
        );
        $crate::conformance_test!(
            $fresh,
            demand::cost_data_reads_each_pool_with_its_allocations_and_usage
        );
        $crate::conformance_test!(
            $fresh,
            webhooks::webhook_endpoints_are_created_listed_and_deleted
        );
        $crate::conformance_test!(
            $fresh,
            webhooks::deliveries_are_claimed_with_a_lease_and_attempts_recorded
        );
        $crate::conformance_test!(
            $fresh,
            webhooks::concurrent_claims_never_hand_out_one_delivery_twice
        );
        $crate::conformance_test!(
            $fresh,
            webhooks::an_organization_has_at_most_twenty_webhook_endpoints
        );
        $crate::conformance_test!(
            $fresh,
            webhooks::one_endpoint_has_at_most_four_deliveries_in_flight
        );
        $crate::conformance_test!(
            $fresh,
            webhooks::a_fan_out_writes_a_bounded_number_of_deliveries
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! conformance_test {
    ($fresh:path, $module:ident :: $rule:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $rule() {
            let Some((store, _guard)) = $fresh(stringify!($rule)).await else {
                return;
            };
            $crate::$module::$rule(store).await;
        }
    };
}

// ---- helpers shared by the rules ----

pub fn at(s: &str) -> Instant {
    Instant::parse(s).unwrap_or_else(|e| panic!("bad instant {s}: {e}"))
}

pub fn now() -> Instant {
    at(NOW)
}

pub fn days(n: i64) -> i64 {
    n * MICROS_PER_DAY
}

pub fn units(n: i64) -> Quantity {
    Quantity::from_units(n)
}

/// Thousandths of `n` units, as pools report them.
pub fn th(n: i64) -> i64 {
    n * 1000
}

pub fn platform() -> Scope {
    Principal {
        token_id: "TOK-26-000900".into(),
        tenant: Tenant::Platform,
        access: Access::Write,
    }
}

pub fn organization(org: &str, workspaces: Option<&[&str]>) -> Scope {
    Principal {
        token_id: "TOK-26-000901".into(),
        tenant: Tenant::Organization {
            id: OrgId::parse(org).unwrap(),
            workspaces: workspaces.map(|w| w.iter().map(|w| ws(w)).collect()),
        },
        access: Access::Write,
    }
}

pub fn ws(s: &str) -> WorkspaceId {
    WorkspaceId::parse(s).unwrap()
}

pub fn line(n: u32) -> ServiceLineId {
    ServiceLineId::parse(&format!("LIN-26-{n:06}")).unwrap()
}

pub fn new_pool(org: &str, workspace: &str, rt: ResourceType, total: i64) -> NewPool {
    NewPool {
        workspace_id: ws(workspace),
        organization_id: OrgId::parse(org).unwrap(),
        resource_type: rt,
        period: rt.default_period(),
        total: units(total),
        overcommit_ratio: 1000,
        unit_price: None,
    }
}

/// A talent-hours pool of `total` hours a week in workspace A.
pub async fn talent_pool(store: &dyn Store, total: i64) -> Pool {
    store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::TalentHours, total),
            now(),
        )
        .await
        .expect("create a pool")
}

pub fn new_allocation(pool: &PoolId, line_no: u32, committed: i64) -> NewAllocation {
    NewAllocation {
        capacity_pool_id: pool.clone(),
        service_line_id: line(line_no),
        committed: CommitmentInput::PerPeriod(units(committed)),
        resources: vec![Resource {
            kind: "talent".into(),
            id: "SCR-128491".into(),
            role: Some("senior_backend_engineer".into()),
            committed_hours_per_week: Some(units(committed)),
        }],
        starts_at: None,
        ends_at: None,
    }
}

pub async fn allocate(
    store: &dyn Store,
    pool: &PoolId,
    line_no: u32,
    committed: i64,
) -> Result<Allocation, StoreError> {
    store
        .create_allocation(&platform(), new_allocation(pool, line_no, committed), now())
        .await
}

pub fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

/// Asserts a 409 of this code.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, expected: &str) {
    match r {
        Err(StoreError::Conflict { code, .. }) if code == expected => {}
        other => panic!("expected conflict {expected}, got {other:?}"),
    }
}

/// Asserts a 422 naming this field.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, expected: &str) {
    match r {
        Err(StoreError::Invalid { field, .. }) if field == expected => {}
        other => panic!("expected invalid {expected}, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    match r {
        Err(StoreError::NotFound | StoreError::Missing(_)) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}
