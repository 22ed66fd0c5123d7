//! Small parsing helpers for path segments, query filters and text fields.

use crate::error::ApiError;
use capacity_domain::ResourceType;

/// Parses an optional filter value, naming the parameter on failure.
pub fn opt_parse<T, E: std::fmt::Display>(
    field: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| parse(&v).map_err(|e| ApiError::validation(field, e.to_string())))
        .transpose()
}

/// A path id of the wrong shape cannot name anything: 404, like a missing one.
pub fn path_id<T, E>(
    raw: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    what: &str,
) -> Result<T, ApiError> {
    parse(raw).map_err(|_| ApiError::not_found(what))
}

/// A free-text field: trimmed, non-empty, bounded, no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_owned())
}

/// A resource type named in a query or path.
pub fn parse_resource_type(s: &str) -> Result<ResourceType, &'static str> {
    ResourceType::parse(s).ok_or(
        "must be one of talent_hours, compute, storage_gb, agent_credits, intelligence_units",
    )
}
