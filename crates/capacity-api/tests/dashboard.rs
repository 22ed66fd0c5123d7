//! The dashboard as a browser renders it (headless Chromium, Debian's
//! package; skipped where it is not installed): it plans from the service's
//! clock, shows units per period, and its figures are the API's.

mod common;
use common::*;
use serde_json::{Value, json};

/// The cell `field` of the row marked `row` (`data-forecast="…"`, …).
fn cell<'a>(dom: &'a str, row: &str, field: &str) -> &'a str {
    let start = dom
        .find(row)
        .unwrap_or_else(|| panic!("no row {row} in {dom:.2000}"));
    let rest = &dom[start..];
    let rest = &rest[..rest.find("</tr>").unwrap()];
    let at = rest
        .find(&format!("data-field=\"{field}\">"))
        .unwrap_or_else(|| panic!("no {field} in {rest}"));
    let cell = &rest[at..];
    let cell = &cell[cell.find('>').unwrap() + 1..];
    &cell[..cell.find("</td>").unwrap()]
}

fn number(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn the_dashboard_plans_from_the_service_clock_with_units_and_the_apis_figures() {
    let app = spawn_app().await;
    // An allocation with no commitment last week: its utilisation is null.
    app.activate_line("LIN-26-090001").await;
    let fresh = app
        .post(
            "/v1/capacity/allocations",
            &app.tokens.org_write,
            json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 1}),
        )
        .await;
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    let fresh_id = fresh.body["data"]["id"].as_str().unwrap().to_owned();

    // The token in the fragment; the page reads the API once loaded.
    let url = format!("{}/#token={}", app.base, app.tokens.org_read);
    let Some(dom) = rendered_dom(url).await else {
        eprintln!("skipped: no chromium on this machine");
        return;
    };
    // The service's clock, not the browser's: the next quarter is 2026-Q3.
    assert!(dom.contains(NOW), "{dom:.2000}");
    assert!(dom.contains("<option>2026-Q3</option>"), "{dom:.3000}");
    // Each demand figure is the API's, with its unit per the pool's period.
    let api = app
        .get(
            "/v1/capacity/demand?workspace_id=WS-26-000021&resource_type=talent_hours&period=2026-Q3",
            &app.tokens.org_read,
        )
        .await;
    let d = &api.body["data"];
    let row = "data-forecast=\"WS-26-000021/talent_hours\"";
    for field in [
        "current_committed",
        "pending_requests",
        "available_supply",
        "supply_gap",
        "overcommitment",
    ] {
        assert_eq!(
            cell(&dom, row, field),
            format!("{} hours / week", number(&d[field])),
            "{field}"
        );
    }
    // A monthly pool is shown per month, not as a per-week figure.
    let credits = app
        .get("/v1/capacity/CAP-26-000198", &app.tokens.org_read)
        .await;
    assert_eq!(
        cell(&dom, "data-pool=\"CAP-26-000198\"", "allocated"),
        format!(
            "{} credits / month",
            number(&credits.body["data"]["allocated"])
        )
    );
    // Utilisation: the API's figure, and "—" where it has none.
    let a441 = app
        .get(
            "/v1/capacity/allocations/ALLOC-26-000441",
            &app.tokens.org_read,
        )
        .await;
    assert_eq!(
        cell(
            &dom,
            "data-allocation=\"ALLOC-26-000441\"",
            "utilisation_percent"
        ),
        format!("{}%", number(&a441.body["data"]["utilisation_percent"]))
    );
    assert_eq!(
        cell(
            &dom,
            &format!("data-allocation=\"{fresh_id}\""),
            "utilisation_percent"
        ),
        "—"
    );
    // A chart per pool.
    assert!(dom.contains("data-pool=\"WS-26-000021/talent_hours\""));
    assert!(dom.contains("<polyline"));
}
