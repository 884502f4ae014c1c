//! The all-time aggregates of the reviews table (`ticket_id = "stats#all",
//! item = "totals"`): tickets per status, closed count, summed resolution time and
//! a histogram of resolution times, updated in the transaction of every ticket
//! change, so the metrics never read the whole history.

use super::TicketStatus;
use crate::dynamo::{Item, UpdateExpression, get_n, n, s};
use aws_sdk_dynamodb::types::Update;

/// The key of the all-time aggregates item.
pub(super) fn totals_key() -> Item {
    Item::from([
        ("ticket_id".into(), s("stats#all")),
        ("item".into(), s("totals")),
    ])
}

/// Upper edges (minutes) of the resolution-time histogram kept in the aggregates;
/// one more bucket holds everything above the last edge.
pub const RESOLUTION_BUCKETS_MINUTES: [u32; 10] = [5, 15, 30, 60, 120, 240, 480, 1440, 2880, 10080];

/// The aggregates attribute counting tickets in `status`.
pub fn count_attribute(status: TicketStatus) -> String {
    format!("count_{}", status.as_str())
}

/// The histogram bucket attribute for a resolution time.
pub fn bucket_attribute(resolution_ms: i64) -> String {
    let minutes = resolution_ms as f64 / 60_000.0;
    RESOLUTION_BUCKETS_MINUTES
        .iter()
        .find(|edge| minutes <= f64::from(**edge))
        .map_or("resolution_le_inf".to_string(), |edge| {
            format!("resolution_le_{edge}")
        })
}

/// The UTC day (`2026-11-25`) of an epoch-millisecond time: the `by-closed` partition.
pub fn day_of(millis: i64) -> String {
    crate::time::rfc3339(millis)[..10].to_string()
}

/// The aggregates update of a transition (`from: None` when a ticket opens).
pub(super) fn totals_update(
    table: &str,
    from: Option<TicketStatus>,
    to: TicketStatus,
    resolution_ms: Option<i64>,
) -> Result<Update, aws_sdk_dynamodb::error::BuildError> {
    let mut update = UpdateExpression::new().add(&count_attribute(to), n(1));
    if let Some(from) = from {
        update = update.add(&count_attribute(from), n(-1));
    }
    if let Some(ms) = resolution_ms {
        update = update
            .add("closed_count", n(1))
            .add("resolution_ms_sum", n(ms.max(0)))
            .add(&bucket_attribute(ms), n(1));
    }
    update
        .apply(
            Update::builder()
                .table_name(table)
                .set_key(Some(totals_key())),
        )
        .build()
}

/// The all-time aggregates of the reviews table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tickets per status, in [`TicketStatus::ALL`] order.
    pub by_status: [u64; 4],
    pub closed: u64,
    pub resolution_ms_sum: u64,
    /// Closed tickets per [`RESOLUTION_BUCKETS_MINUTES`] bucket (not cumulative), then the overflow.
    pub resolution_buckets: [u64; RESOLUTION_BUCKETS_MINUTES.len() + 1],
}

impl Totals {
    /// The aggregates as the item holds them (all zero before the first ticket).
    pub(super) fn from_item(item: Option<&Item>) -> Self {
        let Some(item) = item else {
            return Totals::default();
        };
        let count = |k: &str| get_n(item, k).unwrap_or_default().max(0) as u64;
        let mut totals = Totals {
            closed: count("closed_count"),
            resolution_ms_sum: count("resolution_ms_sum"),
            ..Totals::default()
        };
        for (i, status) in TicketStatus::ALL.iter().enumerate() {
            totals.by_status[i] = count(&count_attribute(*status));
        }
        for (i, edge) in RESOLUTION_BUCKETS_MINUTES.iter().enumerate() {
            totals.resolution_buckets[i] = count(&format!("resolution_le_{edge}"));
        }
        totals.resolution_buckets[RESOLUTION_BUCKETS_MINUTES.len()] = count("resolution_le_inf");
        totals
    }
}
