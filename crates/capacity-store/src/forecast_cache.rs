//! What a forecast reads of a pool over a period, cached per pool and period
//! and keyed by the pool's generation — a counter every change to the pool's
//! supply or commitments bumps in the same transaction — so a cached entry
//! is never served after such a change, in this process or another.
//!
//! A store reads the generation first and the data after it: a change landing
//! in between can only leave newer data under an older generation, which the
//! next read (seeing the newer generation) replaces.

use crate::Expiring;
use capacity_domain::Quantity;
use capacity_domain::forecast::PlanningPeriod;
use capacity_domain::model::Adjustment;
use capacity_domain::timeline::Timeline;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many expiring allocations a forecast lists (by end); the count and
/// total cover all of them.
pub const EXPIRING_LISTED: usize = 100;

/// A pool's supply and commitments over a forecast period.
#[derive(Debug, Clone, Default)]
pub struct PoolPeriod {
    pub supply: Timeline,
    /// The commitment at the period's start as one step, then the steps inside.
    pub committed: Timeline,
    /// Ledger entries effective inside the period.
    pub supply_changes: Vec<Adjustment>,
    /// The first [`EXPIRING_LISTED`] allocations ending inside the period.
    pub expiring: Vec<Expiring>,
    pub expiring_count: usize,
    pub expiring_total: Quantity,
}

impl PoolPeriod {
    /// From everything ending inside the period, in any order: an allocation
    /// closed before its end date ends once (the earlier).
    pub fn new(
        supply: Timeline,
        committed: Timeline,
        supply_changes: Vec<Adjustment>,
        mut expiring: Vec<Expiring>,
    ) -> PoolPeriod {
        expiring.sort_by(|x, y| {
            (x.allocation_id.as_str(), x.ends_at).cmp(&(y.allocation_id.as_str(), y.ends_at))
        });
        expiring.dedup_by(|later, earlier| later.allocation_id == earlier.allocation_id);
        expiring.sort_by(|x, y| {
            (x.ends_at, x.allocation_id.as_str()).cmp(&(y.ends_at, y.allocation_id.as_str()))
        });
        let expiring_count = expiring.len();
        let expiring_total =
            Quantity::from_thousandths(expiring.iter().map(|e| e.committed.thousandths()).sum());
        expiring.truncate(EXPIRING_LISTED);
        PoolPeriod {
            supply,
            committed,
            supply_changes,
            expiring,
            expiring_count,
            expiring_total,
        }
    }

    /// Roughly what the entry holds, in rows.
    fn weight(&self) -> usize {
        1 + self.supply.steps().len()
            + self.committed.steps().len()
            + self.supply_changes.len()
            + self.expiring.len()
    }
}

/// Rows held at most (≈ 50 MiB); past it the cache starts over.
const MAX_WEIGHT: usize = 2_000_000;

type Key = (i64, PlanningPeriod);

#[derive(Default)]
struct Entries {
    by_key: HashMap<Key, (i64, Arc<PoolPeriod>)>,
    weight: usize,
}

/// See the module docs.
#[derive(Default)]
pub struct ForecastCache {
    entries: Mutex<Entries>,
}

impl ForecastCache {
    /// The entry for `pool_seq` over `period`, if it was read at `generation`.
    pub fn get(
        &self,
        pool_seq: i64,
        generation: i64,
        period: PlanningPeriod,
    ) -> Option<Arc<PoolPeriod>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.by_key.get(&(pool_seq, period)) {
            Some((g, data)) if *g == generation => Some(data.clone()),
            _ => None,
        }
    }

    pub fn insert(
        &self,
        pool_seq: i64,
        generation: i64,
        period: PlanningPeriod,
        data: Arc<PoolPeriod>,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let weight = data.weight();
        if entries.weight + weight > MAX_WEIGHT {
            entries.by_key.clear();
            entries.weight = 0;
        }
        if weight > MAX_WEIGHT {
            return;
        }
        if let Some((_, old)) = entries
            .by_key
            .insert((pool_seq, period), (generation, data))
        {
            entries.weight -= old.weight();
        }
        entries.weight += weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capacity_domain::{AllocationId, Instant, ServiceLineId};

    fn ending(id: &str, day: i64, committed: i64) -> Expiring {
        Expiring {
            allocation_id: AllocationId::from_trusted(id.into()),
            service_line_id: ServiceLineId::from_trusted("LIN-26-000001".into()),
            committed: Quantity::from_thousandths(committed),
            ends_at: Instant::from_micros(day * 86_400_000_000),
        }
    }

    #[test]
    fn expiring_counts_each_allocation_once_and_lists_the_first_by_end() {
        let mut all: Vec<Expiring> = (0..150)
            .map(|i| ending(&format!("ALLOC-26-{i:06}"), 200 - i, 1000))
            .collect();
        // Closed on day 10 before its end date on day 100: ends once, on day 10.
        all.push(ending("ALLOC-26-000149", 10, 1000));
        let p = PoolPeriod::new(Timeline::default(), Timeline::default(), vec![], all);
        assert_eq!(p.expiring_count, 150);
        assert_eq!(p.expiring_total.thousandths(), 150_000);
        assert_eq!(p.expiring.len(), EXPIRING_LISTED);
        assert_eq!(p.expiring[0].allocation_id.as_str(), "ALLOC-26-000149");
        assert_eq!(
            p.expiring[0].ends_at,
            Instant::from_micros(10 * 86_400_000_000)
        );
        assert!(p.expiring.windows(2).all(|w| w[0].ends_at <= w[1].ends_at));
    }

    #[test]
    fn an_entry_serves_only_its_generation() {
        let cache = ForecastCache::default();
        let period = PlanningPeriod::parse("2026-Q3").unwrap();
        cache.insert(7, 3, period, Arc::new(PoolPeriod::default()));
        assert!(cache.get(7, 3, period).is_some());
        assert!(cache.get(7, 4, period).is_none());
        assert!(cache.get(8, 3, period).is_none());
        assert!(
            cache
                .get(7, 3, PlanningPeriod::parse("2026-07").unwrap())
                .is_none()
        );
    }
}
