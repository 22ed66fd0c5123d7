//! `capacity-datagen`: writes a benchmark dataset straight into a SQLite file
//! that the service has already migrated (and usually seeded with
//! `capacity demo`), far faster than the API could.
//!
//! The rows are the ones the store itself writes for a pool and an allocation
//! (see `crates/capacity-store-sqlite/src/{pools,allocations,usage}.rs`):
//! `pools` + the `initial` row of `supply_changes`, `service_lines`,
//! `allocations` + their first `allocation_terms` + their `commitment_steps`
//! (built by the domain's own [`CommitmentSchedule`]), `usage_records` and
//! their weekly rollups (`usage_weeks`, `pool_usage_weeks`).
//! Ids are minted with the domain's [`mint`] from where the server would
//! mint next (`capacity_store_sqlite::next_seq_sql`), and the `sequences`
//! floors are raised at the end, so the server goes on minting after the
//! generated rows. Instants are UTC microseconds; quantities are thousandths. The
//! outbox `events` of these creates are not written (no benchmarked read
//! touches them and they would double the file), and this week's
//! low-utilisation evaluation is recorded as done (see below).
//!
//! Layout: `--workspaces` workspaces, each with one pool of every resource
//! type (so 5 pools per workspace; a workspace holds at most one per type).
//! The first `--alloc-workspaces` of them hold the allocations: the first
//! one holds `--big-workspace-allocations` on its talent pool (the demand
//! forecast workload), the rest are spread round-robin over the other
//! workspaces' pools. Every pool has a supply of 10^9 units, so creates and
//! increases always have room. Ten workspaces per organization. Usage
//! records are spread evenly over the allocations that have started, in
//! the 12 weeks before `--now`.
//!
//! Rows are generated in key order where the schema allows (organization,
//! then record id; allocation, then time), so the B-trees grow by appending.
//! The file is written with the journal off and `synchronous=OFF`; the
//! caller writes to a temporary file and renames it on success.
//!
//! Prints shell `KEY=VALUE` lines describing what it made, for `bench/run.sh`.
//!
//! PostgreSQL: `--copy-to-postgres URL` copies such a file, once made, into a
//! database `capacity migrate` has migrated (see [`postgres`]), so the rows
//! are written by this one code path for both backends.
#![forbid(unsafe_code)]

mod postgres;

use capacity_domain::ids::{MintedPrefix, mint};
use capacity_domain::model::Resource;
use capacity_domain::time::{MICROS_PER_DAY, MICROS_PER_WEEK};
use capacity_domain::timeline::CommitmentSchedule;
use capacity_domain::{Instant, Quantity, ResourceType};
use clap::Parser;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant as Clock;

#[derive(Parser)]
#[command(
    name = "capacity-datagen",
    about = "Bulk-write a benchmark dataset into a migrated SQLite file"
)]
struct Args {
    /// The SQLite file (already migrated by `capacity migrate` or `capacity demo`).
    #[arg(long)]
    db: PathBuf,
    /// Workspaces to create, each with one pool of every resource type.
    #[arg(long, default_value_t = 2_000)]
    workspaces: u64,
    /// How many of those workspaces hold allocations.
    #[arg(long, default_value_t = 1_000)]
    alloc_workspaces: u64,
    /// Allocations in all.
    #[arg(long, default_value_t = 1_000_000)]
    allocations: u64,
    /// Allocations on the first workspace's talent pool (0: none special).
    #[arg(long, default_value_t = 100_000)]
    big_workspace_allocations: u64,
    /// Usage records in all.
    #[arg(long, default_value_t = 10_000_000)]
    usage: u64,
    /// The clock the dataset is laid out around (as `CAPACITY_NOW`).
    #[arg(long, env = "CAPACITY_NOW", default_value = "2026-04-15T06:00:00Z")]
    now: String,
    /// First number of generated workspace / organization / service line ids.
    #[arg(long, default_value_t = 200_000)]
    id_base: u64,
    /// Seed of the pseudo-random choices (the dataset is deterministic).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Generate nothing: copy the finished SQLite file (`--db`) into this
    /// PostgreSQL database, already migrated by `capacity migrate`.
    #[arg(long, value_name = "URL")]
    copy_to_postgres: Option<String>,
}

/// SplitMix64: small, fast, deterministic; good enough to spread test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The number the server would mint next for `prefix`.
fn next_seq(conn: &Connection, prefix: MintedPrefix) -> Res<i64> {
    Ok(
        conn.query_row(capacity_store_sqlite::next_seq_sql(prefix), [], |r| {
            r.get(0)
        })?,
    )
}

fn main() -> Res<()> {
    let args = Args::parse();
    if let Some(url) = &args.copy_to_postgres {
        let started = Clock::now();
        let rows = postgres::copy(&args.db, url)?;
        let secs = started.elapsed().as_secs_f64();
        println!("# copied to PostgreSQL by capacity-datagen in {secs:.1} s");
        println!("PG_COPY_SECONDS={secs:.1}");
        println!("PG_COPY_ROWS={rows}");
        return Ok(());
    }
    let now = Instant::parse(&args.now).map_err(|e| format!("--now {e}"))?;
    if args.alloc_workspaces > args.workspaces || args.alloc_workspaces == 0 {
        return Err("--alloc-workspaces must be between 1 and --workspaces".into());
    }
    if args.big_workspace_allocations > args.allocations {
        return Err("--big-workspace-allocations exceeds --allocations".into());
    }
    let started = Clock::now();
    let conn = Connection::open(&args.db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -1000000;
         PRAGMA temp_store = MEMORY;",
    )?;
    let migrated: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sequences')",
        [],
        |r| r.get(0),
    )?;
    if !migrated {
        return Err(
            "the database is not migrated: run `capacity migrate` (or `capacity demo`) on it first"
                .into(),
        );
    }
    let year = now.year();
    let first_pool = next_seq(&conn, MintedPrefix::Pool)?;
    let first_alloc = next_seq(&conn, MintedPrefix::Allocation)?;
    let first_adj = next_seq(&conn, MintedPrefix::Adjustment)?;
    let mut rng = Rng(args.seed);
    let mut g = Gen {
        conn: &conn,
        rng: &mut rng,
        now,
        year,
        pool_seq: first_pool,
        adj_seq: first_adj,
        alloc_seq: first_alloc,
        usage_left: args.usage,
        usage_written: 0,
        last_started: None,
        pool_weeks: BTreeMap::new(),
    };

    let pool_created = now.plus_micros(-400 * MICROS_PER_DAY);
    let others = args.allocations - args.big_workspace_allocations;
    let spread_over = if args.big_workspace_allocations > 0 {
        args.alloc_workspaces - 1
    } else {
        args.alloc_workspaces
    };
    if spread_over == 0 && others > 0 {
        return Err("no workspace left for the allocations outside the big one".into());
    }
    let mut allocs_left = args.allocations;
    conn.execute_batch("BEGIN")?;
    for w in 0..args.workspaces {
        let ws = format!("WS-{:02}-{:06}", year % 100, args.id_base + w);
        let org = format!("ORG-{:02}-{:06}", year % 100, args.id_base + w / 10);
        let pools: Vec<(i64, ResourceType)> = ResourceType::ALL
            .into_iter()
            .map(|rt| g.pool(&ws, &org, rt, pool_created).map(|seq| (seq, rt)))
            .collect::<Res<_>>()?;
        if w >= args.alloc_workspaces {
            continue;
        }
        let (count, targets): (u64, &[(i64, ResourceType)]) =
            if w == 0 && args.big_workspace_allocations > 0 {
                (args.big_workspace_allocations, &pools[..1])
            } else {
                let i = if args.big_workspace_allocations > 0 {
                    w - 1
                } else {
                    w
                };
                // An even share, the remainder going to the first workspaces.
                let share = others / spread_over + u64::from(i < others % spread_over);
                (share, &pools[..])
            };
        for k in 0..count {
            let (pool_seq, rt) = targets[(k % targets.len() as u64) as usize];
            g.allocation(&ws, &org, pool_seq, rt, allocs_left)?;
            allocs_left -= 1;
            if g.alloc_seq % 50_000 == 0 {
                conn.execute_batch("COMMIT; BEGIN")?;
            }
        }
    }
    g.leftover_usage()?;
    g.pool_usage_weeks()?;
    conn.execute_batch("COMMIT")?;

    conn.execute(
        "UPDATE sequences SET next = ?1 WHERE prefix = 'CAP'",
        [g.pool_seq],
    )?;
    conn.execute(
        "UPDATE sequences SET next = ?1 WHERE prefix = 'ALLOC'",
        [g.alloc_seq],
    )?;
    conn.execute(
        "UPDATE sequences SET next = ?1 WHERE prefix = 'ADJ'",
        [g.adj_seq],
    )?;
    // Fold every pool's steps up to now into its stored running commitment
    // (migration 0008), as the server's background fold would on start.
    conn.execute(
        "UPDATE pools SET committed_base = committed_base + \
         (SELECT COALESCE(SUM(c.delta), 0) FROM commitment_steps c \
          WHERE c.pool_seq = pools.seq AND c.at > pools.committed_through AND c.at <= ?1), \
         committed_through = ?1 WHERE committed_through < ?1",
        [now.micros()],
    )?;
    // This week's low-utilisation evaluation counts as done, as it would be
    // on a service that has been running: otherwise every fresh server of the
    // benchmark starts it over — ~680,000 `capacity.utilisation_low` events in
    // one transaction, 40 s on SQLite and over 7 minutes on PostgreSQL, during
    // the measured runs, holding the EVT sequence (so every write waits) —
    // and, killed before it commits, never finishes.
    conn.execute(
        "INSERT INTO evaluations (kind, period_start, evaluated_at) VALUES ('utilisation_low', ?1, ?2) \
         ON CONFLICT DO NOTHING",
        [now.week_start().micros(), now.micros()],
    )?;
    // Back to the mode the server opens it in (persistent in the file).
    conn.execute_batch("PRAGMA locking_mode = NORMAL;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    let secs = started.elapsed().as_secs_f64();
    let (pool_seq, alloc_seq, usage_written) = (g.pool_seq, g.alloc_seq, g.usage_written);
    drop(conn);

    let yy = year % 100;
    println!("# written by capacity-datagen in {secs:.1} s (journal_mode now {mode})");
    println!("GEN_SECONDS={secs:.1}");
    println!("GEN_POOLS={}", pool_seq - first_pool);
    println!("GEN_ALLOCATIONS={}", alloc_seq - first_alloc);
    println!("GEN_USAGE_RECORDS={usage_written}");
    println!("ID_YEAR={yy:02}");
    println!("POOL_SEQ_LO={first_pool}");
    println!("POOL_SEQ_HI={}", pool_seq - 1);
    println!("ALLOC_SEQ_LO={first_alloc}");
    println!("ALLOC_SEQ_HI={}", alloc_seq - 1);
    // Allocations outside the big workspace (for reads and patches that
    // should look like a typical workspace's).
    println!(
        "ALLOC_SEQ_TYPICAL_LO={}",
        first_alloc + args.big_workspace_allocations as i64
    );
    println!("WS_LO={}", args.id_base);
    println!("WS_ALLOC_HI={}", args.id_base + args.alloc_workspaces - 1);
    if args.big_workspace_allocations > 0 {
        println!("BIG_WORKSPACE=WS-{yy:02}-{:06}", args.id_base);
        println!(
            "BIG_WORKSPACE_ALLOCATIONS={}",
            args.big_workspace_allocations
        );
    }
    Ok(())
}

struct Gen<'a> {
    conn: &'a Connection,
    rng: &'a mut Rng,
    now: Instant,
    year: i16,
    pool_seq: i64,
    adj_seq: i64,
    alloc_seq: i64,
    usage_left: u64,
    usage_written: u64,
    /// The last allocation that has started: (seq, pool seq, organization, starts_at).
    last_started: Option<(i64, i64, String, Instant)>,
    /// Usage per (pool, week), written at the end (`pool_usage_weeks`).
    pool_weeks: BTreeMap<(i64, i64), i64>,
}

/// Supply of every generated pool: 10^9 units, in thousandths.
const POOL_TOTAL: i64 = 1_000_000_000 * 1000;

impl Gen<'_> {
    fn pool(&mut self, ws: &str, org: &str, rt: ResourceType, created: Instant) -> Res<i64> {
        let seq = self.pool_seq;
        self.pool_seq += 1;
        let id = mint(MintedPrefix::Pool, self.year, seq);
        self.conn
            .prepare_cached(
                "INSERT INTO pools (seq, id, workspace_id, organization_id, resource_type, period, overcommit_ratio, \
                 unit_price_amount, unit_price_currency, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1000, NULL, NULL, ?7, ?7)",
            )?
            .execute(params![
                seq,
                id,
                ws,
                org,
                rt.as_str(),
                rt.default_period().as_str(),
                created.micros()
            ])?;
        let adj = self.adj_seq;
        self.adj_seq += 1;
        self.conn
            .prepare_cached(
                "INSERT INTO supply_changes (seq, id, pool_seq, delta, reason, source, effective_at, created_at, created_by) \
                 VALUES (?1, ?2, ?3, ?4, NULL, 'initial', ?5, ?5, 'datagen')",
            )?
            .execute(params![
                adj,
                mint(MintedPrefix::Adjustment, self.year, adj),
                seq,
                POOL_TOTAL,
                created.micros()
            ])?;
        Ok(seq)
    }

    fn allocation(
        &mut self,
        ws: &str,
        org: &str,
        pool_seq: i64,
        rt: ResourceType,
        allocs_left: u64,
    ) -> Res<()> {
        let now = self.now;
        let seq = self.alloc_seq;
        self.alloc_seq += 1;
        let id = mint(MintedPrefix::Allocation, self.year, seq);
        let line = format!("LIN-{:02}-{:07}", self.year % 100, 2_000_000 + seq);
        // Mostly running already, some starting in the next two months.
        let day = |d: i64| d * MICROS_PER_DAY;
        let start_day = self.rng.range(-300, 60);
        let starts_at = Instant::from_micros(
            now.week_start().micros() + day(start_day) + self.rng.range(0, 23) * 3_600_000_000,
        );
        // A quarter end within the next eight months (many inside 2026-Q3).
        let ends_at = (self.rng.range(0, 3) == 0).then(|| {
            let from = starts_at.max(now);
            from.plus_micros(day(self.rng.range(30, 240)))
        });
        let created_at = starts_at.min(now.plus_micros(-day(1)));
        let (committed, resources) = match rt {
            ResourceType::TalentHours => {
                let hours = self.rng.range(2, 80) * 500; // 1 to 40 hours, in halves
                let r = Resource {
                    kind: "talent".into(),
                    id: format!("SCR-{:06}", 100_000 + self.rng.range(0, 899_999)),
                    role: Some("engineer".into()),
                    committed_hours_per_week: Some(Quantity::from_thousandths(hours)),
                };
                (hours, vec![r])
            }
            _ => (self.rng.range(100, 5000) * 1000, Vec::new()),
        };
        let resources = serde_json::to_string(&resources)?;

        self.conn
            .prepare_cached(
                "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'active', ?4, ?4)",
            )?
            .execute(params![line, ws, org, created_at.micros()])?;
        self.conn
            .prepare_cached(
                "INSERT INTO allocations (seq, id, pool_seq, workspace_id, organization_id, service_line_id, resource_type, \
                 status, starts_at, ends_at, closed_at, created_at, updated_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9, NULL, ?10, ?10, 1)",
            )?
            .execute(params![
                seq,
                id,
                pool_seq,
                ws,
                org,
                line,
                rt.as_str(),
                starts_at.micros(),
                ends_at.map(|e| e.micros()),
                created_at.micros()
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
                 VALUES (?1, ?2, ?3, ?4, NULL)",
            )?
            .execute(params![seq, starts_at.micros(), committed, resources])?;
        let terms = [(starts_at, Quantity::from_thousandths(committed))];
        let timeline = CommitmentSchedule {
            starts_at,
            ends_at,
            closed_at: None,
            terms: &terms,
        }
        .timeline();
        let mut step = self.conn.prepare_cached(
            "INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for &(at, delta) in timeline.steps() {
            step.execute(params![pool_seq, at.micros(), seq, delta])?;
        }

        // Usage: this allocation's even share of what is left, in the 12
        // weeks before now and not before it started.
        if starts_at < now && self.usage_left > 0 {
            let share = self.usage_left.div_ceil(allocs_left);
            let from = starts_at.max(now.plus_micros(-12 * MICROS_PER_WEEK));
            self.usage(seq, pool_seq, org, rt, from, share)?;
            self.last_started = Some((seq, pool_seq, org.to_owned(), from));
        }
        Ok(())
    }

    /// `count` usage records of one allocation, and their weekly rollups as
    /// the store keeps them (`usage_weeks`; `pool_usage_weeks` at the end).
    fn usage(
        &mut self,
        seq: i64,
        pool_seq: i64,
        org: &str,
        rt: ResourceType,
        from: Instant,
        count: u64,
    ) -> Res<()> {
        let span = (self.now.micros() - 1 - from.micros()).max(1);
        let mut ins = self.conn.prepare_cached(
            "INSERT INTO usage_records (organization_id, record_id, allocation_seq, quantity, occurred_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut weeks: BTreeMap<i64, i64> = BTreeMap::new();
        for j in 0..count {
            // Evenly spaced in time, so (allocation, occurred_at) is appended in order.
            let at = from.micros() + span * j as i64 / count as i64;
            let quantity = match rt {
                ResourceType::TalentHours => self.rng.range(1, 16) * 500,
                _ => self.rng.range(1, 200) * 1000,
            };
            ins.execute(params![
                org,
                format!("gen-{:010}", self.usage_written),
                seq,
                quantity,
                at,
                (at + 60_000_000).min(self.now.micros())
            ])?;
            *weeks
                .entry(Instant::from_micros(at).week_start().micros())
                .or_default() += quantity;
            self.usage_written += 1;
        }
        self.usage_left -= count;
        // An upsert: the leftover records may land on an allocation (and
        // weeks) already written.
        let mut week = self.conn.prepare_cached(
            "INSERT INTO usage_weeks (allocation_seq, week_start, quantity) VALUES (?1, ?2, ?3) \
             ON CONFLICT (allocation_seq, week_start) DO UPDATE SET quantity = quantity + excluded.quantity",
        )?;
        for (&w, &q) in &weeks {
            week.execute(params![seq, w, q])?;
            *self.pool_weeks.entry((pool_seq, w)).or_default() += q;
        }
        Ok(())
    }

    /// Records left over because the last allocations start in the future
    /// go to the last one that has started.
    fn leftover_usage(&mut self) -> Res<()> {
        if self.usage_left == 0 {
            return Ok(());
        }
        let Some((seq, pool_seq, org, from)) = self.last_started.clone() else {
            return Err("no allocation has started: nowhere to put usage".into());
        };
        let rt: String = self.conn.query_row(
            "SELECT resource_type FROM allocations WHERE seq = ?1",
            [seq],
            |r| r.get(0),
        )?;
        let rt = ResourceType::parse(&rt).ok_or("bad resource type")?;
        let left = self.usage_left;
        self.usage(seq, pool_seq, &org, rt, from, left)
    }

    fn pool_usage_weeks(&mut self) -> Res<()> {
        let mut ins = self.conn.prepare_cached(
            "INSERT INTO pool_usage_weeks (pool_seq, week_start, quantity) VALUES (?1, ?2, ?3)",
        )?;
        for (&(pool, week), &q) in &self.pool_weeks {
            ins.execute(params![pool, week, q])?;
        }
        Ok(())
    }
}
