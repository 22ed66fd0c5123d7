//! Identifiers. The service mints `PREFIX-YY-NNNNNN` ids; its sequence number
//! is global per prefix (it does not restart each year), so ordering by the
//! number orders by creation and survives the jump to seven digits.
//! Identifiers owned by other platform services are accepted as given,
//! checked only by shape.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MintedPrefix {
    Pool,
    Allocation,
    Request,
    Event,
    WebhookEndpoint,
    Token,
    Adjustment,
}

impl MintedPrefix {
    /// Every prefix the service mints.
    pub const ALL: [MintedPrefix; 7] = [
        MintedPrefix::Pool,
        MintedPrefix::Allocation,
        MintedPrefix::Request,
        MintedPrefix::Event,
        MintedPrefix::WebhookEndpoint,
        MintedPrefix::Token,
        MintedPrefix::Adjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MintedPrefix::Pool => "CAP",
            MintedPrefix::Allocation => "ALLOC",
            MintedPrefix::Request => "REQ",
            MintedPrefix::Event => "EVT",
            MintedPrefix::WebhookEndpoint => "WHE",
            MintedPrefix::Token => "TOK",
            MintedPrefix::Adjustment => "ADJ",
        }
    }
}

/// Formats a minted id: two-digit UTC year of creation, zero-padded sequence.
pub fn mint(prefix: MintedPrefix, year: i16, seq: i64) -> String {
    format!("{}-{:02}-{:06}", prefix.as_str(), year.rem_euclid(100), seq)
}

/// The sequence number of a well-formed minted id, or `None`.
pub fn parse_minted(prefix: MintedPrefix, s: &str) -> Option<i64> {
    let rest = s.strip_prefix(prefix.as_str())?.strip_prefix('-')?;
    let (yy, n) = rest.split_once('-')?;
    if yy.len() != 2 || !all_digits(yy) || n.len() < 6 || n.len() > 15 || !all_digits(n) {
        return None;
    }
    n.parse().ok()
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `PREFIX-YY-NNNNNN` (six or more digits), the shape of the platform's ids.
fn is_year_seq(prefix: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    match rest.split_once('-') {
        Some((yy, n)) => {
            yy.len() == 2 && all_digits(yy) && n.len() >= 6 && n.len() <= 15 && all_digits(n)
        }
        None => false,
    }
}

/// A talent id: `SCR-NNNNNN`.
pub fn is_talent_id(s: &str) -> bool {
    s.strip_prefix("SCR-")
        .is_some_and(|n| n.len() >= 6 && n.len() <= 15 && all_digits(n))
}

macro_rules! external_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("An identifier of shape `", $prefix, "-YY-NNNNNN`.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const EXPECTED: &'static str =
                concat!("must be ", $what, " id of shape ", $prefix, "-YY-NNNNNN");
            pub fn parse(s: &str) -> Result<Self, &'static str> {
                if is_year_seq($prefix, s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Self::EXPECTED)
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// For values read back from our own storage.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

external_id!(OrgId, "ORG", "an organization");
external_id!(WorkspaceId, "WS", "a workspace");
external_id!(ServiceLineId, "LIN", "a service line");
external_id!(PoolId, "CAP", "a capacity pool");
external_id!(AllocationId, "ALLOC", "an allocation");

impl PoolId {
    pub fn seq(&self) -> i64 {
        parse_minted(MintedPrefix::Pool, &self.0).unwrap_or(-1)
    }
}
impl AllocationId {
    pub fn seq(&self) -> i64 {
        parse_minted(MintedPrefix::Allocation, &self.0).unwrap_or(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_and_parses() {
        assert_eq!(mint(MintedPrefix::Pool, 2026, 112), "CAP-26-000112");
        assert_eq!(
            mint(MintedPrefix::Allocation, 2026, 1_234_567),
            "ALLOC-26-1234567"
        );
        assert_eq!(parse_minted(MintedPrefix::Pool, "CAP-26-000112"), Some(112));
        assert_eq!(parse_minted(MintedPrefix::Pool, "CAP-26-00011"), None);
        assert_eq!(parse_minted(MintedPrefix::Pool, "ALLOC-26-000112"), None);
    }

    #[test]
    fn validates_external_shapes() {
        assert!(OrgId::parse("ORG-26-090500").is_ok());
        assert!(WorkspaceId::parse("WS-26-000021").is_ok());
        assert!(ServiceLineId::parse("LIN-26-084729").is_ok());
        assert!(WorkspaceId::parse("WS-2026-000021").is_err());
        assert!(WorkspaceId::parse("ws-26-000021").is_err());
        assert!(WorkspaceId::parse("WS-26-00002a").is_err());
        assert!(is_talent_id("SCR-128491"));
        assert!(!is_talent_id("SCR-12849"));
    }
}
