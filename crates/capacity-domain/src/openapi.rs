//! JSON Schemas of the domain types, for the API's OpenAPI document (cargo
//! feature `openapi`). The types serialize by hand (exact numbers, RFC 3339
//! strings, checked identifiers), so their schemas are written by hand too,
//! next to the parsers they describe: a schema here must accept exactly what
//! the parser accepts, or the contract tests (schemathesis) find the gap.

use crate::ids::{AllocationId, OrgId, PoolId, ServiceLineId, WorkspaceId};
use crate::quantity::{Delta, Quantity};
use crate::time::Instant;
use crate::utilisation::Percent;
use serde_json::json;
use std::borrow::Cow;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// A schema from its JSON form (utoipa's builders are verbose for this).
pub fn schema_from_json(value: serde_json::Value) -> RefOr<Schema> {
    match serde_json::from_value::<Schema>(value) {
        Ok(s) => RefOr::T(s),
        // Only reachable by a typo in this file; the tests render every schema.
        Err(e) => panic!("invalid schema literal: {e}"),
    }
}

macro_rules! hand_schema {
    ($ty:ty, $name:literal, $json:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                schema_from_json($json)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

hand_schema!(
    Quantity,
    "Quantity",
    json!({
        "type": "number",
        "minimum": 0,
        "multipleOf": 0.001,
        "description": "An exact, non-negative decimal with at most 3 fractional digits (held as integer thousandths), in the unit and period of its pool. Sums (a pool's total, a week's usage) may exceed the 10^12 a single input may give.",
        "examples": [38.5]
    })
);

/// A [`Quantity`] as a request gives it: at most 10^12.
pub struct QuantityInput;

hand_schema!(
    QuantityInput,
    "QuantityInput",
    json!({
        "type": "number",
        "minimum": 0,
        "maximum": 1_000_000_000_000i64,
        "multipleOf": 0.001,
        "description": "An exact, non-negative decimal with at most 3 fractional digits, at most 10^12, in the unit and period of its pool.",
        "examples": [40]
    })
);

hand_schema!(
    Delta,
    "Delta",
    json!({
        "type": "number",
        "minimum": -1_000_000_000_000i64,
        "maximum": 1_000_000_000_000i64,
        "multipleOf": 0.001,
        "description": "An exact signed decimal with at most 3 fractional digits, magnitude at most 10^12.",
        "examples": [40]
    })
);

hand_schema!(
    Instant,
    "Instant",
    json!({
        "type": "string",
        "format": "date-time",
        "description": "An RFC 3339 timestamp in UTC (`Z`).",
        "examples": ["2026-04-15T06:00:00Z"]
    })
);

/// The largest per-week figure a request may give, in thousandths: it
/// converts to at most 10^12 a month (× 52 / 12, rounded), whatever the
/// pool's period, so every schema-valid per-week figure is storable.
pub const MAX_PER_WEEK_THOUSANDTHS: i64 = 230_769_230_769_230;

/// A [`Quantity`] given per week.
pub struct PerWeekQuantity;

hand_schema!(
    PerWeekQuantity,
    "PerWeekQuantity",
    json!({
        "type": "number",
        "minimum": 0,
        "maximum": 230_769_230_769.23,
        "multipleOf": 0.001,
        "description": "A per-week figure: an exact, non-negative decimal with at most 3 fractional digits, at most 230769230769.23 (10^12 a month). Converted to the pool's period.",
        "examples": [32]
    })
);

/// An [`Instant`] as a request gives it: any offset, years 1970 to 9999.
/// (Answers may hold earlier instants, e.g. the Monday starting 1970's
/// first ISO week, so the two schemas differ.)
pub struct InstantInput;

hand_schema!(
    InstantInput,
    "InstantInput",
    json!({
        "type": "string",
        "format": "date-time",
        "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-",
        "description": "An RFC 3339 timestamp with an offset, between 1970 and 9999.",
        "examples": ["2026-05-01T00:00:00Z"]
    })
);

hand_schema!(
    Percent,
    "Percent",
    json!({
        "type": "number",
        "description": "A percentage, rounded half away from zero to one decimal (96.3). No `multipleOf: 0.1`: \
            in binary floating point 96.3 / 0.1 is not a whole number, so JSON Schema validators would refuse \
            real answers.",
        "examples": [96.3]
    })
);

macro_rules! id_schema {
    ($ty:ty, $name:literal, $prefix:literal, $example:literal) => {
        hand_schema!(
            $ty,
            $name,
            json!({
                "type": "string",
                "pattern": concat!("^", $prefix, "-[0-9]{2}-[0-9]{6,15}$"),
                "examples": [$example]
            })
        );
    };
}

id_schema!(OrgId, "OrganizationId", "ORG", "ORG-26-090500");
id_schema!(WorkspaceId, "WorkspaceId", "WS", "WS-26-000021");
id_schema!(ServiceLineId, "ServiceLineId", "LIN", "LIN-26-084729");
id_schema!(PoolId, "CapacityPoolId", "CAP", "CAP-26-000112");
id_schema!(AllocationId, "AllocationId", "ALLOC", "ALLOC-26-000441");

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    #[test]
    fn every_hand_written_schema_parses() {
        for s in [
            Quantity::schema(),
            Delta::schema(),
            Instant::schema(),
            InstantInput::schema(),
            QuantityInput::schema(),
            PerWeekQuantity::schema(),
            Percent::schema(),
            OrgId::schema(),
            WorkspaceId::schema(),
            ServiceLineId::schema(),
            PoolId::schema(),
            AllocationId::schema(),
        ] {
            assert!(matches!(s, RefOr::T(_)));
        }
    }
}
