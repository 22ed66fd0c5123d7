//! The Capacity API's domain: pure types and maths, no I/O.
//!
//! - [`quantity`]: exact decimals as integer thousandths (SPEC §3).
//! - [`ids`]: identifiers we mint (`CAP-26-000112`) and ones we accept by shape.
//! - [`resource`]: resource types, units and periods, with the exact
//!   per-week conversion factors (SPEC §2).
//! - [`time`]: instants, ISO weeks and billing periods. `now` is always passed in.
//! - [`timeline`]: supply and commitments as step functions of time, and the
//!   no-overcommit check every backend calls inside its write transaction.
//! - [`utilisation`]: actual / committed as a percent, rounded exactly.
//! - [`model`]: the records the store returns and their public JSON views.
#![forbid(unsafe_code)]

pub mod cost;
pub mod forecast;
pub mod ids;
pub mod model;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod quantity;
pub mod resource;
pub mod time;
pub mod timeline;
pub mod utilisation;
pub mod webhook;

pub use ids::{AllocationId, MintedPrefix, OrgId, PoolId, ServiceLineId, WorkspaceId};
pub use quantity::{Delta, Quantity, QuantityError};
pub use resource::{Period, ResourceType, Unit};
pub use time::Instant;
pub use timeline::{Overcommit, Timeline};
