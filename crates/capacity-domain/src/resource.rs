//! Resource types, their units and periods (SPEC §2), and the exact
//! conversions between a period and a week.

use crate::quantity::Quantity;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ResourceType {
    TalentHours,
    Compute,
    StorageGb,
    AgentCredits,
    IntelligenceUnits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Unit {
    HoursPerWeek,
    VcpuHours,
    Gigabytes,
    Credits,
    Units,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::TalentHours,
        ResourceType::Compute,
        ResourceType::StorageGb,
        ResourceType::AgentCredits,
        ResourceType::IntelligenceUnits,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::TalentHours => "talent_hours",
            ResourceType::Compute => "compute",
            ResourceType::StorageGb => "storage_gb",
            ResourceType::AgentCredits => "agent_credits",
            ResourceType::IntelligenceUnits => "intelligence_units",
        }
    }
    pub fn parse(s: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn unit(self) -> Unit {
        match self {
            ResourceType::TalentHours => Unit::HoursPerWeek,
            ResourceType::Compute => Unit::VcpuHours,
            ResourceType::StorageGb => Unit::Gigabytes,
            ResourceType::AgentCredits => Unit::Credits,
            ResourceType::IntelligenceUnits => Unit::Units,
        }
    }
    pub fn default_period(self) -> Period {
        match self {
            ResourceType::TalentHours => Period::Weekly,
            _ => Period::Monthly,
        }
    }
}

impl Period {
    pub const ALL: [Period; 4] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }
    pub fn parse(s: &str) -> Option<Period> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// How many of this period make a week, as an exact fraction
    /// (numerator, denominator): a month is 12/52 of… a week is 52/12 months.
    pub fn per_week_factor(self) -> (i128, i128) {
        match self {
            Period::Hourly => (168, 1),
            Period::Daily => (7, 1),
            Period::Weekly => (1, 1),
            Period::Monthly => (12, 52),
        }
    }
    /// A per-period amount expressed per week, rounded half away from zero to
    /// thousandths. For display only: comparisons use [`Period::per_week_factor`].
    pub fn to_per_week(self, q: Quantity) -> Quantity {
        let (n, d) = self.per_week_factor();
        Quantity::from_thousandths(div_round(q.thousandths() as i128 * n, d) as i64)
    }
    /// A per-week amount converted to this period, rounded half away from zero
    /// to thousandths (the stored, authoritative figure).
    pub fn from_per_week(self, q: Quantity) -> Quantity {
        let (n, d) = self.per_week_factor();
        Quantity::from_thousandths(div_round(q.thousandths() as i128 * d, n) as i64)
    }
}

/// Integer division rounding half away from zero.
pub fn div_round(num: i128, den: i128) -> i128 {
    debug_assert!(den != 0);
    let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
    if num >= 0 {
        (num * 2 + den) / (den * 2)
    } else {
        -((-num * 2 + den) / (den * 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_per_week_rounds_half_away_from_zero() {
        let q = Quantity::from_units(45_000);
        assert_eq!(Period::Monthly.to_per_week(q).to_string(), "10384.615");
        assert_eq!(Period::Weekly.to_per_week(q), q);
        assert_eq!(
            Period::Daily
                .to_per_week(Quantity::from_units(8))
                .to_string(),
            "56"
        );
        assert_eq!(
            Period::Monthly
                .from_per_week(Quantity::from_units(12))
                .to_string(),
            "52"
        );
        assert_eq!(
            Period::Monthly
                .from_per_week(Quantity::from_units(1))
                .to_string(),
            "4.333"
        );
    }

    #[test]
    fn div_round_is_half_away_from_zero() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(-5, 2), -3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(-4, 3), -1);
    }
}
