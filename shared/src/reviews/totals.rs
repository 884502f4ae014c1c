//! The all-time aggregates of the reviews table: tickets per status, closed count,
//! summed resolution time and a histogram of resolution times, updated in the
//! transaction of every ticket change, so the metrics never read the whole history.
//!
//! They are [`SHARDS`] items (`ticket_id = "stats#<shard>", item = "totals"`), a
//! ticket's changes always landing on the shard its id picks: no item is written by
//! every ticket change (one item would cap the whole system at one partition's write
//! rate, and make concurrent changes collide). A read sums the shards, and the
//! `stats#all` item of the unsharded layout, so nothing counted before is lost.

use super::TicketStatus;
use crate::dynamo::{Item, UpdateExpression, get_n, n, s};
use aws_sdk_dynamodb::types::Update;

/// How many aggregate items the counts are spread over.
pub const SHARDS: u32 = 16;

/// The aggregates shard of a ticket: stable, and spread evenly by its (UUID) id.
pub fn shard_of(ticket_id: &str) -> u32 {
    ticket_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % SHARDS
}

/// The key of one aggregates item (`all`: the unsharded layout's single item).
fn totals_key(shard: &str) -> Item {
    Item::from([
        ("ticket_id".into(), s(&format!("stats#{shard}"))),
        ("item".into(), s("totals")),
    ])
}

/// The keys of every aggregates item, the legacy one included: what a read sums.
pub(super) fn all_totals_keys() -> Vec<Item> {
    (0..SHARDS)
        .map(|shard| totals_key(&shard.to_string()))
        .chain([totals_key("all")])
        .collect()
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

/// The aggregates update of a ticket's transition (`from: None` when it opens), on
/// the ticket's shard.
pub(super) fn totals_update(
    table: &str,
    ticket_id: &str,
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
                .set_key(Some(totals_key(&shard_of(ticket_id).to_string()))),
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
    /// The aggregates as one item holds them (all zero for a shard not written yet).
    fn from_item(item: &Item) -> Self {
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

    /// The sum of the aggregates the given items hold.
    pub(super) fn sum_of<'a>(items: impl IntoIterator<Item = &'a Item>) -> Self {
        let mut sum = Totals::default();
        for part in items.into_iter().map(Totals::from_item) {
            sum.closed += part.closed;
            sum.resolution_ms_sum += part.resolution_ms_sum;
            for (total, shard) in sum.by_status.iter_mut().zip(part.by_status) {
                *total += shard;
            }
            for (total, shard) in sum
                .resolution_buckets
                .iter_mut()
                .zip(part.resolution_buckets)
            {
                *total += shard;
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_spread_over_every_shard_and_keep_theirs() {
        let ids: Vec<String> = (0..2000)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let mut per_shard = [0usize; SHARDS as usize];
        for id in &ids {
            assert_eq!(shard_of(id), shard_of(id));
            per_shard[shard_of(id) as usize] += 1;
        }
        // 125 expected per shard; none starved, none hot.
        assert!(
            per_shard.iter().all(|n| (60..=200).contains(n)),
            "{per_shard:?}"
        );
        assert_eq!(
            all_totals_keys().len(),
            SHARDS as usize + 1,
            "the shards and the legacy item"
        );
    }

    #[test]
    fn the_totals_are_the_sum_of_the_shards() {
        let item = |open: i64, closed: i64, bucket: &str| {
            Item::from([
                ("count_open".to_string(), n(open)),
                ("closed_count".to_string(), n(closed)),
                ("resolution_ms_sum".to_string(), n(closed * 1000)),
                (bucket.to_string(), n(closed)),
            ])
        };
        let shards = [
            item(2, 1, "resolution_le_5"),
            item(3, 0, "resolution_le_5"),
            item(0, 4, "resolution_le_inf"),
        ];
        let sum = Totals::sum_of(&shards);
        assert_eq!(sum.by_status[0], 5);
        assert_eq!((sum.closed, sum.resolution_ms_sum), (5, 5000));
        assert_eq!(sum.resolution_buckets[0], 1);
        assert_eq!(sum.resolution_buckets[RESOLUTION_BUCKETS_MINUTES.len()], 4);
        assert_eq!(Totals::sum_of(&[]), Totals::default());
    }
}
