//! Cursor pagination: `limit` (default 20, max 100) and an opaque `cursor`
//! taken from the previous page's `meta.cursor`.

use crate::error::ApiError;
use capacity_store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

pub fn page_request(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    page_request_within(limit, cursor, DEFAULT_LIMIT, MAX_LIMIT)
}

/// [`page_request`] with another default and maximum (the cost report's
/// pages count allocations, a thousand by default).
pub fn page_request_within(
    limit: Option<&str>,
    cursor: Option<&str>,
    default: u32,
    max: u32,
) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => default,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(
                    "limit",
                    format!("must be an integer from 1 to {max}"),
                ));
            }
        },
    };
    let after = cursor.map(decode_cursor).transpose()?;
    Ok(PageRequest { limit, after })
}

/// The shape of a cursor, as the OpenAPI document states it. A cursor is
/// `c` and the hex position to continue after: every string of this shape is
/// a valid position (at worst an empty page), so the schema is exact.
pub const CURSOR_PATTERN: &str = "^c[0-9a-f]{1,15}$";

fn decode_cursor(c: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::validation(
            "cursor",
            "is not a cursor this API issued (take it from meta.cursor)",
        )
    };
    let hex = c.strip_prefix('c').ok_or_else(bad)?;
    if hex.is_empty()
        || hex.len() > 15
        || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad());
    }
    i64::from_str_radix(hex, 16).map_err(|_| bad())
}

fn encode_cursor(seq: i64) -> String {
    format!("c{seq:x}")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Meta {
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(pattern = "^c[0-9a-f]{1,15}$")]
    pub cursor: Option<String>,
    pub has_more: bool,
}

impl Meta {
    /// The meta of a page that continues after `next`, if any.
    pub fn after(next: Option<i64>) -> Meta {
        Meta {
            cursor: next.map(encode_cursor),
            has_more: next.is_some(),
        }
    }
}

/// One object that is a page of something larger (a cost report, a service
/// line's allocations): `{"data": {...}, "meta": {...}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PagedBody<T> {
    pub data: T,
    pub meta: Meta,
}

/// A page of a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListBody<T> {
    pub data: Vec<T>,
    pub meta: Meta,
}

/// Shapes a store page as `{"data": [...], "meta": {...}}`.
pub fn list_body<T, U>(page: Page<T>, view: impl FnMut(T) -> U) -> ListBody<U> {
    ListBody {
        data: page.items.into_iter().map(view).collect(),
        meta: Meta {
            cursor: page.next.map(encode_cursor),
            has_more: page.next.is_some(),
        },
    }
}

/// One object.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DataBody<T> {
    pub data: T,
}

/// `limit` and `cursor`, the query of a list that takes no filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `meta.cursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    pub cursor: Option<String>,
}
