//! Cursor pagination: `limit` (default 20, max 100) and an opaque `cursor`
//! taken from the previous page's `meta.cursor`.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use capacity_store::{Page, PageRequest};
use serde::Serialize;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

pub fn page_request(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(
                    "limit",
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let after = cursor.map(decode_cursor).transpose()?;
    Ok(PageRequest { limit, after })
}

fn decode_cursor(c: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::validation(
            "cursor",
            "is not a cursor this API issued (take it from meta.cursor)",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("after:")
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(bad)
}

fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{seq}"))
}

#[derive(Serialize)]
pub struct Meta {
    pub cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Serialize)]
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

#[derive(Serialize)]
pub struct DataBody<T> {
    pub data: T,
}
